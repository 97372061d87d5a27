"""Training of the stage-I network (``ihmr train stage1``): the entry point :func:`train_stage1`.

Data: InterHand2.6M-format splits (real files or ``ihmr synth`` output) through
:mod:`ihmr.data.interhand`, as the samples of :mod:`ihmr.stage1.dataset`; parameter labels from
``annotations/<split>/ihmr_params.json`` when present, else from the NeuralAnnot MANO file, else none
(joint losses only), rotated into the camera frame (:mod:`ihmr.stage1.labels`).

Loop (:class:`~ihmr.stage1.trainer.Trainer`): Adam, cosine decay of the learning rate over all steps
of ``epochs`` epochs, the release's loss weights (:class:`~ihmr.stage1.loss.Stage1Loss`), the
augmentation of :mod:`ihmr.stage1.augment` seeded per ``(seed, epoch, index)``. Under ``torchrun``
the model is wrapped in DistributedDataParallel (gloo on CPU, nccl on GPU,
:func:`ihmr.distributed.init_from_env`); ``batch`` is the global batch, each of the ``N`` processes
takes ``batch / N`` of the same shuffled order (:class:`~ihmr.stage1.dataset.ResumableShardSampler`)
and gradients are averaged, so N processes follow one process's trajectory; on GPU BatchNorm is
synchronised (SyncBatchNorm), on CPU (gloo, where SyncBatchNorm does not run) each process normalises
with its own ``batch / N`` samples, so the curves agree closely but not exactly. Rank 0 validates (on
the whole validation split) and writes every file.

Files in ``RUN_DIR``: ``last.pt`` (every epoch and when stopped early; with the training state under
``train=``, :mod:`ihmr.stage1.weights`), ``best.pt`` (lowest validation MPJPE of the parameter-head
joints), ``train_log.csv`` (per step), ``val_log.csv`` (per epoch), ``curve.png``
(:mod:`ihmr.stage1.run_logs`), ``config.json`` and TensorBoard events in ``tb/`` when
``torch.utils.tensorboard`` imports.

``resume=True`` continues from ``last.pt`` exactly: epoch, position inside the epoch, global step,
optimizer, scheduler, grad scaler and RNG states.

Messages go to the ``logging`` logger ``ihmr.stage1`` (the run summary and the validation figures
at INFO, notices at WARNING); ``ihmr train stage1`` shows them on the console.
"""

from __future__ import annotations

from ihmr.stage1.config import TrainStage1Config
from ihmr.stage1.trainer import Trainer

__all__ = ["TrainStage1Config", "train_stage1"]


def train_stage1(cfg: TrainStage1Config) -> dict:
    """Train (or resume) a stage-I network; returns a summary dict (see
    :meth:`~ihmr.stage1.trainer.Trainer.run`). Joins the torchrun process group when launched by
    torchrun (the caller shuts it down)."""
    return Trainer(cfg).run()
