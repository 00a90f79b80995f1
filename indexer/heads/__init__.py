"""Zero-shot heads trained on stored embeddings, judged by generalized zero-shot learning (GZSL).

Labelled items exist for the *seen* classes only; the head's class list also holds *unseen* classes,
known only by a description (their prompts' text embedding, or a vector of attributes). A head is
trained from the stored embeddings of the labelled items (no image is read again), on one CPU thread,
seeded and reproducible, and ends as one linear layer over all its classes (``head.Head``), stored in
the catalog and scored with numpy alone:

- ``projection``: a bilinear compatibility between embeddings and descriptions (``projection``);
- ``generative``: synthetic embeddings of the unseen classes from their descriptions, then one
  classifier over all classes (``generative``; a conditional Gaussian by default, f-CLSWGAN optional).

Transductively, the stored embeddings of the collection's *unlabelled* items (any class, no label read)
refine either head (``transductive``): EM moves each unseen class to where its items are; the generative
head samples from the moved classes, the projection head self-trains on the items EM is sure of.

Hyper-parameters and the calibration constant are chosen on held-out *seen* classes (``select``);
``train`` reads the labels and stores the head. Only ``select``, ``fit``, ``projection`` and
``generative`` import torch.
"""

from ..query.head import METHODS, Head

__all__ = ["METHODS", "Head"]
