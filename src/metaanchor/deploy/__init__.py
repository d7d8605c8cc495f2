"""Getting a trained model out of training: BatchNorm folding, baking an anchor set, export."""
