"""Host-side training for hopwise: data (loaders, synthetic corpus, splits) and models.

``python -m train.corpus --profile default`` builds and inspects the training corpus.
"""
