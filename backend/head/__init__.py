"""Head models in FLAME's layout: safe loader, bundled stand-in, torch LBS, multi-LOD subdivision.

See docs/CONTRACTS.md (backend/head). Frame: metres, +Y up, +Z out of the face, +X subject's left.
"""

from .lbs import HeadModelTensors, LBSOutput, lbs, lbs_params
from .loader import load_head_model, load_landmark_embedding, save_landmark_embedding
from .lod import LOD, build_lods, mesh_edges, subdivide_attributes
from .model import JOINT_NAMES, PARENTS, HeadModel, HeadModelError, LandmarkEmbedding, save_head_model
from .params import HeadParams

__all__ = [
    "JOINT_NAMES", "PARENTS", "HeadModel", "HeadModelError", "LandmarkEmbedding", "HeadParams",
    "HeadModelTensors", "LBSOutput", "lbs", "lbs_params", "load_head_model",
    "load_landmark_embedding", "save_head_model", "save_landmark_embedding", "LOD", "build_lods",
    "mesh_edges", "subdivide_attributes",
]
