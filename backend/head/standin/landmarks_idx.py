"""Named mediapipe face-mesh landmark indices used by the stand-in generator.

"L"/"R" are the subject's left/right (+X is the subject's left). Mediapipe's canonical topology.
"""

IRIS_R = (468, 469, 470, 471, 472)  # centre first, then the 4 contour points
IRIS_L = (473, 474, 475, 476, 477)
EYE_R = (33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7)  # closed loop
EYE_L = (263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390, 249)
EYE_UPPER = {"R": (33, 246, 161, 160, 159, 158, 157, 173, 133),
             "L": (263, 466, 388, 387, 386, 385, 384, 398, 362)}
EYE_LOWER = {"R": (33, 7, 163, 144, 145, 153, 154, 155, 133),
             "L": (263, 249, 390, 373, 374, 380, 381, 382, 362)}
LIP_UPPER_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LIP_LOWER_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
LIPS_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)
MOUTH_CORNER_R, MOUTH_CORNER_L = 61, 291
LIP_TOP, LIP_BOTTOM = 0, 17
LIP_INNER_TOP, LIP_INNER_BOTTOM = 13, 14
NOSE_TIP, NOSE_BOTTOM, NOSE_BRIDGE = 1, 2, 6
CHIN = 152
CHEEKS = (205, 425)        # buccal (puff)
CHEEKBONES = (50, 280)
BROW = {"R": (70, 63, 105, 66, 107), "L": (300, 293, 334, 296, 336)}
BROW_CENTERS = (105, 334)
EYE_MID_LIDS = {"R": (160, 159, 158, 144, 145, 153), "L": (387, 386, 385, 373, 374, 380)}
