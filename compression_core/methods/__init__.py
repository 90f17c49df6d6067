"""Data-free compression methods: pure functions of tensors returning what a `TensorRecord` stores."""
