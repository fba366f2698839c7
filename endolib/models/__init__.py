"""Models: the eleven networks of the study and the one factory, :func:`endolib.models.factory.create_model`
over a plain dict of builders. Blocks (:mod:`.blocks`) and assemblies (:mod:`.unet`, :mod:`.segformer`,
:mod:`.classifiers`) live in separate files; size variants are data; :mod:`.weights` reads checkpoints.
May import the ground floor only; never training.
"""
