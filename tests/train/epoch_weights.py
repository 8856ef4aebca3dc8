"""A shared helper for the trainer tests: the model's weights after each epoch."""


def keep_weights_each_epoch(trainer) -> dict:
    """Add a callback to `trainer`; returns the dict it fills with {epoch: [weights]} as epochs end."""
    weights: dict = {}

    class Keep:
        def on_epoch_end(self, trainer, epoch, logs):
            weights[epoch] = [v.numpy().copy() for v in trainer.model.variables]

    trainer.callbacks.append(Keep())
    return weights
