"""Training of the learned methods: patch sampling with clinical-looking augmentations (`slices`)
and one script per method family (`python -m moemri.train.smoe`)."""
