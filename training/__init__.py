"""The training steps (filter, preprocess, train, register): the same code in an Azure ML job and locally."""
