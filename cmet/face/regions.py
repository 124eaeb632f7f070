"""Named groups of MediaPipe FaceMesh landmark indices (the 478-point layout with refined irises).

Sides are the subject's: ``RIGHT_*`` is the subject's right, which shows on the image's left
(negative x in canonical coordinates); MediaPipe names its eye and brow groups the same way.
Contours are ordered along the curve, so they can be drawn or used as polygons.
"""

from __future__ import annotations

# Closed loop round the face, starting at the top of the forehead and going towards the subject's left.
FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip
FOREHEAD_TOP = (10, 338, 297, 109, 67)
# The part of the oval above the brows: skin that a brow raise pulls up (the frontalis moves the whole forehead).
FOREHEAD_OVAL = (21, 54, 103, 67, 109, 10, 338, 297, 332, 284, 251)
# The rest of the outline, temples to jaw: it stays put, so the face keeps its shape and the background its place.
RIM = tuple(i for i in FACE_OVAL if i not in FOREHEAD_OVAL)
CHIN = (152, 148, 377, 176, 400)
# The jaw line: the lower half of the oval, ear to ear.
JAW = (361, 288, 397, 365, 379, 378, 400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132)

LIP_CORNERS = (61, 291)  # right, left (outer contour)
INNER_LIP_CORNERS = (78, 308)
LIPS_OUTER_UPPER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
LIPS_OUTER_LOWER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
LIPS_INNER_UPPER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LIPS_INNER_LOWER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
UPPER_LIP_CENTRE = (0, 13)  # outer, inner
LOWER_LIP_CENTRE = (17, 14)

RIGHT_EYE_UPPER = (33, 246, 161, 160, 159, 158, 157, 173, 133)  # outer corner → inner corner
RIGHT_EYE_LOWER = (33, 7, 163, 144, 145, 153, 154, 155, 133)
LEFT_EYE_UPPER = (263, 466, 388, 387, 386, 385, 384, 398, 362)
LEFT_EYE_LOWER = (263, 249, 390, 373, 374, 380, 381, 382, 362)
RIGHT_EYE_CORNERS = (33, 133)  # outer, inner
LEFT_EYE_CORNERS = (263, 362)
RIGHT_IRIS = (468, 469, 470, 471, 472)  # centre first, then the ring
LEFT_IRIS = (473, 474, 475, 476, 477)
IRIS_RINGS = RIGHT_IRIS[1:] + LEFT_IRIS[1:]

RIGHT_BROW_UPPER = (70, 63, 105, 66, 107)  # outer → inner
RIGHT_BROW_LOWER = (46, 53, 52, 65, 55)
LEFT_BROW_UPPER = (300, 293, 334, 296, 336)
LEFT_BROW_LOWER = (276, 283, 282, 295, 285)
RIGHT_BROW_INNER = (107, 66, 55, 65)
RIGHT_BROW_OUTER = (70, 63, 46, 53)
LEFT_BROW_INNER = (336, 296, 285, 295)
LEFT_BROW_OUTER = (300, 293, 276, 283)
GLABELLA = (9, 8, 151)

NOSE_BRIDGE = (168, 6, 197, 195, 5)
NOSE_TIP = (4, 1, 19, 94, 2)
RIGHT_NOSE_WING = (48, 64, 98, 115, 129, 102, 49, 131, 220)
LEFT_NOSE_WING = (278, 294, 327, 344, 358, 331, 279, 360, 440)
# Skin between the nose and the upper lip (philtrum and the upper nasolabial area).
PHILTRUM = (164, 167, 393, 165, 391, 92, 322)

# Under the eye and over the cheekbone: what rises with a Duchenne smile.
RIGHT_CHEEK = (117, 118, 119, 100, 101, 50, 36, 205, 187, 47, 126, 142)
LEFT_CHEEK = (346, 347, 348, 329, 330, 280, 266, 425, 411, 277, 355, 371)
# Skin just under the lower lip, above the chin.
MENTAL = (18, 83, 313, 182, 406, 200, 201, 421)

WHOLE_FACE = tuple(range(478))
