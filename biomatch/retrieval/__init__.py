"""Candidate retrieval: finger codes, row indexes of fingers and faces, and the search components.

The modules, in the order of the data flow (one job each)::

    codes             minutiae -> fixed-length binary finger codes (the runtime encoder;
                      its numba kernels in _codes_nb)
    training          PCA + ITQ training of the code model (offline; the generated training
                      set lives in biomatch.datasets.code_training)
    rows              the row-index life cycle shared by fingers and faces: implicit rows,
                      memory-mapped base, in-memory delta, tombstones
    finger_index      FingerIndex: binary codes of one finger position, Hamming search (FAISS)
    face_index        FaceIndex: unit-norm face embeddings, cosine search (FAISS)
    code_files        the versioned, checksummed files of a shard's finger-code index
    faiss_retrieval   FaissRetrieval: the two-phase code stage of a shard's search
    components        the Retrieval protocols, ExhaustiveRetrieval and the registry by name

FAISS is imported on first use, not with this package.
"""

from __future__ import annotations

from .codes import (DEFAULT_MODEL_PATH, EncodeModel, EncodeParams, default_model, finger_code, finger_codes,
                    hamming)
from .components import (CandidateFilter, CodeRanking, ExhaustiveRetrieval, Retrieval, make_retrieval, register,
                         registered)
from .face_index import FaceHits, FaceIndex
from .faiss_retrieval import FaissRetrieval, FaissRetrievalParams, code_ranking
from .finger_index import FingerIndex
from .rows import RowIndex
from .training import train_model

__all__ = ["EncodeParams", "EncodeModel", "DEFAULT_MODEL_PATH", "default_model", "finger_code", "finger_codes",
           "hamming", "train_model", "RowIndex", "FingerIndex", "FaceIndex", "FaceHits", "FaissRetrieval",
           "FaissRetrievalParams", "code_ranking", "Retrieval", "CandidateFilter", "CodeRanking",
           "ExhaustiveRetrieval", "make_retrieval", "register", "registered"]
