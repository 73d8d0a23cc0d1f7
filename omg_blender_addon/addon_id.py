"""The extension's package name, used as the preferences' bl_idname."""

from __future__ import annotations

# ``bl_ext.user_default.omg_avatar.omg_blender_addon`` -> ``bl_ext.user_default.omg_avatar``
ADDON_PACKAGE: str = __package__.rpartition(".")[0]


def addon_preferences(context):
    """The add-on's preferences, or None when the add-on is not enabled through the add-on system."""
    addon = context.preferences.addons.get(ADDON_PACKAGE)
    return None if addon is None else addon.preferences
