from ihmr.cli.main import main

raise SystemExit(main())
