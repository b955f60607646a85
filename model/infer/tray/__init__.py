"""Tray layouts for fixed kiosks: compartments, registration to the empty-tray reference, fill.

A kiosk keeps a photo of its EMPTY tray (the reference) and the tray's compartments as
polygons in the reference's pixels. For each meal photo:

1. `register_tray` finds the tray and the homography reference -> photo (SIFT or ORB
   features on the tray only, ratio test, MAGSAC homography, pose plausibility checks,
   optional ECC refinement on the food-free ridges between compartments). No tray, a
   plate, too few inliers or an implausible pose: `found=False` with a reason.
2. `warp_compartments` puts the compartments (and the tray outline) into the photo.
3. `measure_fill` compares each compartment with the warped empty tray (brightness
   normalised per compartment from the ridge around it, Lab colour + texture difference
   tolerant to a few px of misregistration) -> food mask, fill = food / compartment area.
4. `leftover_fraction(before, after)` per slot.

`propose_compartments` suggests the compartments from the empty-tray photo for an admin.
All work runs at a bounded resolution (`WORK_SIDE`); results are in full-photo pixels.
Imports only numpy, OpenCV and Pillow (serve/ imports this module; never torch).

Modules: layout (compartments, JSON, geometry), register (reference, registration),
fill (compartments in a photo, fill, leftover), propose (compartment proposals).
"""
from __future__ import annotations

from model.infer.tray.fill import (
                                   EMPTY_FILL,
                                   CompartmentFill,
                                   FillConfig,
                                   PlacedCompartment,
                                   WarpedLayout,
                                   leftover_fraction,
                                   measure_fill,
                                   warp_compartments,
)
from model.infer.tray.layout import (
                                   WORK_SIDE,
                                   Compartment,
                                   LayoutError,
                                   TrayLayout,
                                   downscale,
                                   layout_to_json,
                                   parse_layout,
                                   polygon_mask,
                                   tray_outline,
                                   warp_points,
)
from model.infer.tray.propose import propose_compartments
from model.infer.tray.register import (
                                   MIN_AGREEMENT,
                                   MIN_INLIERS,
                                   Registration,
                                   RegistrationConfig,
                                   TrayReference,
                                   prepare_reference,
                                   register_tray,
)

__all__ = ["EMPTY_FILL", "MIN_AGREEMENT", "MIN_INLIERS", "WORK_SIDE", "Compartment",
           "CompartmentFill", "FillConfig", "LayoutError", "PlacedCompartment", "Registration",
           "RegistrationConfig", "TrayLayout", "TrayReference", "WarpedLayout", "downscale",
           "layout_to_json", "leftover_fraction", "measure_fill", "parse_layout",
           "polygon_mask", "prepare_reference", "propose_compartments", "register_tray",
           "tray_outline", "warp_compartments", "warp_points"]
