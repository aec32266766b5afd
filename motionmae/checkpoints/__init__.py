"""Checkpoints: the on-disk format (:mod:`~motionmae.checkpoints.format`) and the encoders
built from them (:mod:`~motionmae.checkpoints.encoders`). Below ``train``, ``eval``,
``interop`` and ``api``: it imports none of them."""
