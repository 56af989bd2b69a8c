"""Model families, their registry, losses, and model files.

One module per family (:mod:`.blstm_mask`, :mod:`.centroids`,
:mod:`.deep_clustering`) over shared parts (:mod:`.base`); :mod:`.registry`
names them, with the losses each accepts and what the report can draw of
it, without importing torch; :mod:`.checkpoint` writes and reads model files
and run checkpoints; :mod:`.losses` holds the training objectives.
"""
