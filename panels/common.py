"""Shared panel placement: View3D > Sidebar > OMG Avatar."""

from __future__ import annotations


class OMGPanel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "OMG Avatar"
