"""The training progress bar of ``tfresflow train``: the recent loss and an honest ETA.

Keras' own bar (``fit(verbose=1)``) shows ``loss`` as the running mean over the whole epoch, and
``tfresflow train`` runs one epoch of ``--steps`` steps, so the bar showed the mean over the
whole run, which lags far behind the current loss (a demo ended showing 4.04 nats for a model
whose train NLL was 3.85). Its first ETA also multiplies the first step's time, which includes
tracing the training step, by the number of steps ("14 hours").

:class:`RecentLossProgress` (passed with ``fit(verbose=0)``) shows instead

* ``loss``: an exponential moving average of the per-step training loss,

      m_t = (1 - b) * sum_{k <= t} b^(t - k) l_k / (1 - b^t),      b = 1 - 1 / window,

  i.e. a bias-corrected mean in which step ``t - k`` has weight ``b^k``: about the last
  ``window`` steps (default: 5% of the run, at least 10 and at most 100 steps). ``l_k`` is the
  mean loss of step ``k``'s batch (the loss ``fit`` minimises: the NLL in nats plus any
  regularisation losses). To read ``l_k`` exactly, the callback resets the model's ``loss``
  metric (a Keras ``Mean``) before every step, so the ``loss`` that ``fit`` logs, also in its
  ``History``, is the last step's batch loss, not the epoch mean;
* the time per step and ETA of Keras' ``Progbar``, started after the first step: the first
  step (tracing) is excluded from both, and so from the elapsed time shown at the end.

Steps are counted over all epochs of the fit (``epochs x steps_per_epoch``); a fit resumed
at ``initial_epoch`` says so and counts the steps of this fit only.

The final model's train NLL, measured on training data after the fit, is what ``metrics.json``
reports (``train_nll``).
"""
import math

import keras

from tfresflow.validation import check_positive_int


class RecentLossProgress(keras.callbacks.Callback):
    """A ``keras.utils.Progbar`` of ``fit``'s steps showing the recent loss (module docstring).

    What the training loss leaves out (``FlowModel.training_loss_notes``, e.g. the
    ``log|det W|`` of relative-gradient steps) is printed before the first step.

    Args:
      window: the EMA's horizon in steps (``b = 1 - 1 / window``); ``1`` shows each step's loss;
        ``None``: :func:`default_window` of the number of steps.
    """

    def __init__(self, window=None):
        super().__init__()
        self.window = None if window is None else check_positive_int(window, "window")
        self.decay = None
        self.bar = None
        self.step = 0
        self.ema = 0.0
        self.weight = 0.0   # 1 - b^t: the bias correction
        self.total = None
        self._epoch = self._first_epoch = 0
        self._started = False
        self._loss_metric = None

    def on_train_begin(self, logs=None):
        self.bar, self.step, self.ema, self.weight = None, 0, 0.0, 0.0
        self._epoch = self._first_epoch = 0
        self._started = False
        per_epoch = self.params.get("steps")
        self.total = per_epoch * self.params.get("epochs", 1) if per_epoch else None
        window = self.window or default_window(self.total)
        self.decay = 1.0 - 1.0 / window
        self._loss_metric = next((m for m in self.model.metrics if m.name == "loss"), None)
        for note in getattr(self.model, "training_loss_notes", ()):
            print(note, flush=True)

    def on_epoch_begin(self, epoch, logs=None):
        if not self._started:
            self._started, self._first_epoch = True, epoch
            if epoch and self.total:
                print(f"resuming at step {epoch * self.params['steps'] + 1} of {self.total}",
                      flush=True)
        self._epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if self._loss_metric is not None:
            self._loss_metric.reset_state()   # logs["loss"] at batch end: this step's loss

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        self.ema = self.decay * self.ema + (1.0 - self.decay) * float(loss)
        self.weight = self.decay * self.weight + (1.0 - self.decay)
        per_epoch = self.params.get("steps") or 0
        if self.bar is None:  # after the first step: its tracing time is no step time
            target = self.total - self._first_epoch * per_epoch if self.total else None
            self.bar = keras.utils.Progbar(target, stateful_metrics=["loss"])
        self.step = (self._epoch - self._first_epoch) * per_epoch + batch + 1   # of this fit
        # a non-finite loss ends the fit (FlowModel raises): end the bar's line first
        self.bar.update(self.step, [("loss", self.recent_loss)],
                        finalize=self.step == self.bar.target or not math.isfinite(float(loss)))

    def on_train_end(self, logs=None):
        if self.bar is not None and self.step != self.bar.target:
            self.bar.update(self.step, [("loss", self.recent_loss)], finalize=True)  # stopped

    @property
    def recent_loss(self):
        """The bias-corrected EMA ``m_t`` of the per-step losses seen so far (NaN before any)."""
        return self.ema / self.weight if self.weight else float("nan")


def default_window(steps):
    """The EMA horizon for a run of ``steps`` steps: 5% of them, clipped to [10, 100]."""
    return min(100, max(10, (steps or 0) // 20))


def callbacks(quiet=False, window=None):
    """The progress callbacks of a CLI fit: ``[]`` when ``quiet``, else the recent-loss bar.

    Pass them with ``verbose=0`` (Keras' own bar off).
    """
    return [] if quiet else [RecentLossProgress(window)]
