"""What each built-in trainable takes, and its declaration, without torch: a space file is checked against
these, and ``hpsearch list`` shows them, without loading a model (about 3 s of imports on two cores).

One module per built-in family (``addition``, ``image``, ``sequence``, ``text``) holds its hyperparameters
(a pydantic model: names, types, defaults, ranges, and the rules between them) and ``declare``s the
trainable with its metric and mode; the training code it names (``trainables/addition.py`` and so on) is
imported when a trial first calls it. ``optim`` holds the optimizer and schedule knobs they share.
"""
