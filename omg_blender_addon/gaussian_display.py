"""Viewport/render display of Gaussian objects: a Geometry Nodes modifier + an emissive splat material.

A Gaussian object is a mesh of loose vertices (the centres) with the 3DGS point attributes. The
node group instances a low-poly ellipsoid on every vertex, oriented by ``rot_0..3`` (w, x, y, z,
Blender frame) and sized by ``exp(scale_i) * Splat Scale`` (semi-axes in standard deviations; 3.33
by default, the splatter's footprint), stores the colour ``0.5 + C0 * f_dc`` and the alpha
``sigmoid(opacity)`` on the instances, and joins the original vertices back in front of the
instances. So the evaluated mesh (depsgraph) still holds exactly the deformed centres in order
(export and tests read it), while the instances draw the splats.

The splatter adds 0.3 px^2 to every projected 2D covariance (the EWA low-pass of 3DGS/gsplat, without
gsplat's "antialiased" opacity compensation), so a Gaussian never draws narrower than about half a
pixel. That depends on the camera's pixel size, which the material cannot see, so the node group
does it: every Gaussian's semi-axes become ``sqrt(s^2 + lowpass * px^2)`` in the object's units,
``px`` = one pixel at the Gaussian's depth from the scene's active camera. Adding the same variance
along all three axes is the same low-pass after projection: the projection's Jacobian J maps the
isotropic 3D term to ``sigma^2 J J^T``, 0.3 px^2 on the image axes (to within the off-axis factor
1 + (x/z)^2 of a pinhole, under 3 % for a portrait). The pixel's size comes from the active camera's
Camera Info (its projection matrix holds lens, sensor fit and the render's aspect: one pixel at unit
depth, or an orthographic camera's pixel, is ``2 / (P[0][0] * width)``) and the render's width in
pixels (the "Render Width" input, driven from the scene's resolution and percentage: a simple
expression, no Python runs), so it follows camera switches, lens and resolution edits, and a camera
added after the import (a driver on the camera's data would fail while the scene has none, and
Blender does not evaluate a failed driver again).

The material is unlit (emission: the colours are radiance, as in 3DGS) mixed with transparency by
the Gaussian's projected falloff at each pixel: in instance space (EEVEE and Cycles give every
instance its own object space, so World->Object turns the view ray into the Gaussian's frame, in
units of Splat Scale standard deviations) the 3D Gaussian's exponent along the pixel's ray is
smallest at the ray's closest approach to the centre, ``d^2 = |p|^2 - (p.r)^2`` (p: the surface
point, r: the unit ray), and that minimum is the projected 2D Gaussian's exponent, so alpha =
``min(0.999, opacity exp(-0.5 k^2 d^2))`` (k = Splat Scale), as the splatter draws it. Back faces are
culled, so each instance is counted once, like a splat. The colours are display (sRGB) values,
decoded to linear with the exact sRGB curve; the Standard view transform encodes them back
(AgX/Filmic change them). With the scene's custom property ``omg_splat_display_colors`` = 1 the
material emits the display values themselves instead (Render Splats' "splatter colours" with the
scene's engine sets it for its render: the engine then blends display values, as the splatter does,
and the operator writes them without encoding; see display_render). EEVEE draws the material with dithered transparency: the instances of one
object are not sorted for blending (blended mode sorts per object, and a whole Gaussian object is
one), while dithering resolves the overlap per sample through the depth test and converges to the
sorted composite with more render samples. It reads the instance attributes with Attribute nodes
of type Instancer, which Material Preview, EEVEE and Cycles all support; Splat Scale reaches it as
an instance attribute too. Node group and material are shared by every Gaussian object and created
once per file.

An avatar LOD's head Gaussians grow per frame where the pose stretches the skin beyond what they were
sized for, as the backend poses them and the splat renderer draws them (:func:`_growth`; the LOD
mesh's edges and attributes written by scene_write._growth_edges); other Gaussian objects keep their
size (factor 1).

An avatar LOD's view-dependent Gaussians (the backend's view_colors.py; the point attributes
``omg_view_*`` of scene_write) change colour and size with the active camera as the splat renderer
draws them (:func:`_view_weight`): each one's direction to the source camera is turned by its view
frame (the global and neck bones' rotations, driven into the modifier by :func:`drive_view_frames`,
blended by its "global" vertex-group weight) and compared with its direction to the camera; the
colour mixes towards the side colour and the size grows by the same smoothstep. The share is kept
as the point attribute ``omg_view_weight`` on the evaluated mesh.
"""

from __future__ import annotations

import bpy

from .scene_data import (GROW_ATTRIBUTE, GROW_PARENT_ATTRIBUTES, GROW_REST_ATTRIBUTE, GROW_WEIGHT_ATTRIBUTES,
                         VIEW_GROW_ATTRIBUTE, VIEW_SIDE_ATTRIBUTE, VIEW_TOWARD_ATTRIBUTE)

NODE_GROUP_NAME = "OMG Gaussian Splats"
MATERIAL_NAME = "OMG Gaussian Splat"
MODIFIER_NAME = "OMG Splats"
SPLAT_SCALE_SOCKET = "Splat Scale"
MIN_ALPHA_SOCKET = "Min Opacity"
LOWPASS_SOCKET = "Low-pass"              # px^2 added to each projected covariance (the splatter's eps2d)
RENDER_WIDTH_SOCKET = "Render Width"    # the render's width in pixels (resolution x percentage), driven
LOWPASS = 0.3  # px^2, backend.render.splat's eps2d
COLOR_ATTRIBUTE = "omg_color"
ALPHA_ATTRIBUTE = "omg_alpha"
SIGMA_ATTRIBUTE = "omg_sigmas"  # the ellipsoid's semi-axes in standard deviations (Splat Scale)
LOCAL_ATTRIBUTE = "omg_local"   # instance-space position on the unit sphere (per instanced vertex)
GROWTH_BASE_ATTRIBUTE = "omg_grow_base"  # the frame's growth factor of the head's LOD-0 rows (_growth)
GROWTH_ATTRIBUTE = "omg_growth"          # the frame's growth factor of every Gaussian (1: none)
DISPLAY_COLORS_PROP = "omg_splat_display_colors"  # scene custom property: 1 = emit display values
VIEW_WEIGHT_ATTRIBUTE = "omg_view_weight"  # the share of the source view's colour and size (_view_weight)
# the global and neck bones' local rotations (w, x, y, z, the model frame: the bones' rest orientation),
# driven from the rig (drive_view_frames); identity where nothing drives them
VIEW_FRAME_SOCKETS = tuple(f"{bone} {c}" for bone in ("Global", "Neck") for c in "WXYZ")
C0 = 0.28209479177387814  # SH degree-0 basis constant (backend.avatar.ply.C0)
SPLAT_SCALE = 3.33  # instance semi-axes in standard deviations: the splatter's footprint (splat_shader.EXTEND)
MAX_ALPHA = 0.999  # the splatter's alpha clamp (backend.render)
_VERSION = 10  # bump when the node layout changes: older files get a fresh group


def splat_material(created: list | None = None) -> bpy.types.Material:
    """The shared splat material (created on first use; appended to ``created`` when new)."""
    mat = bpy.data.materials.get(MATERIAL_NAME)
    if mat is not None and mat.get("omg_version") == _VERSION:
        return mat
    mat = bpy.data.materials.new(MATERIAL_NAME)
    mat["omg_version"] = _VERSION
    if created is not None:
        created.append(mat)
    mat.use_nodes = True
    # dithered, not blended: blended surfaces are sorted per object, and the instances of one
    # object come out in index order (measured: 19 dB vs 26 dB dithered, docs/figures/blender.md)
    mat.surface_render_method = "DITHERED"
    mat.use_backface_culling = True
    mat.use_backface_culling_shadow = True
    nt = mat.node_tree
    nt.nodes.clear()

    def attr(kind: str, name: str):
        node = nt.nodes.new("ShaderNodeAttribute")
        node.attribute_type, node.attribute_name = kind, name
        return node

    def m(op, a, b=None):
        node = nt.nodes.new("ShaderNodeMath")
        node.operation = op
        for i, v in enumerate((a, b)):
            if v is None:
                continue
            if isinstance(v, float):
                node.inputs[i].default_value = v
            else:
                nt.links.new(v, node.inputs[i])
        return node.outputs[0]

    def vm(op, *args):
        node = nt.nodes.new("ShaderNodeVectorMath")
        node.operation = op
        for i, v in enumerate(args):
            if v is None:
                continue
            if isinstance(v, (float, tuple)):
                node.inputs[i].default_value = v if isinstance(v, tuple) else (v, v, v)
            else:
                nt.links.new(v, node.inputs[i])
        return node.outputs["Value" if op in ("DOT_PRODUCT", "LENGTH") else "Vector"]

    color = attr("INSTANCER", COLOR_ATTRIBUTE)
    alpha = attr("INSTANCER", ALPHA_ATTRIBUTE)
    sig = attr("INSTANCER", SIGMA_ATTRIBUTE)
    local = attr("GEOMETRY", LOCAL_ATTRIBUTE)
    geo = nt.nodes.new("ShaderNodeNewGeometry")
    # the view ray in instance space (units of Splat Scale standard deviations): the instance's
    # object matrix is rotation * scale, so its inverse turns the ray into the Gaussian's frame
    to_local = nt.nodes.new("ShaderNodeVectorTransform")
    to_local.vector_type, to_local.convert_from, to_local.convert_to = "VECTOR", "WORLD", "OBJECT"
    nt.links.new(geo.outputs["Incoming"], to_local.inputs["Vector"])
    ray = vm("NORMALIZE", to_local.outputs["Vector"])
    p = local.outputs["Vector"]
    # squared distance of the ray from the centre (the 3D Gaussian's exponent is smallest there,
    # and its projected 2D Gaussian at this pixel is exp(-0.5 k^2 d^2)): |p|^2 - (p.ray)^2
    along = vm("DOT_PRODUCT", p, ray)
    d2 = m("MAXIMUM", m("SUBTRACT", vm("DOT_PRODUCT", p, p), m("MULTIPLY", along, along)), 0.0)
    k2 = m("MULTIPLY", sig.outputs["Fac"], sig.outputs["Fac"])
    falloff = m("EXPONENT", m("MULTIPLY", m("MULTIPLY", d2, k2), -0.5))
    front = m("SUBTRACT", 1.0, geo.outputs["Backfacing"])
    fac = m("MINIMUM", m("MULTIPLY", m("MULTIPLY", alpha.outputs["Fac"], falloff), front), MAX_ALPHA)
    # our own stochastic transparency: opaque where a threshold, fresh for every instance and
    # every render sample, is below alpha, else clear. EEVEE's dithering hashes object-space
    # positions, which are the same unit sphere for every instance, so stacked splats would share
    # thresholds and leave holes that no sample count removes; here the threshold is white noise
    # of the instance's random number and the sample's world position (sub-pixel jitter moves it)
    info = nt.nodes.new("ShaderNodeObjectInfo")
    noise = nt.nodes.new("ShaderNodeTexWhiteNoise")
    noise.noise_dimensions = "4D"
    nt.links.new(vm("MULTIPLY", geo.outputs["Position"], 1.0e4), noise.inputs["Vector"])
    nt.links.new(info.outputs["Random"], noise.inputs["W"])
    fac = m("GREATER_THAN", fac, noise.outputs["Value"])
    # the colours are display (sRGB) values like the photo's; shading works in linear light, so
    # decode with the exact sRGB curve (the Standard view transform encodes with it again)
    c = color.outputs["Vector"]
    low = vm("MULTIPLY", c, 1.0 / 12.92)
    high = vm("POWER", vm("MULTIPLY", vm("ADD", c, 0.055), 1.0 / 1.055), 2.4)
    step = vm("MULTIPLY", vm("ADD", vm("SIGN", vm("SUBTRACT", c, 0.04045)), 1.0), 0.5)
    linear = vm("MULTIPLY_ADD", step, vm("SUBTRACT", high, low), low)
    # "splatter colours" (Render Splats with the scene's engine): the colours stay display values,
    # so the engine's linear blend is the splatter's display-space blend; a View Layer attribute
    # reads the scene's custom property (absent: 0, the sRGB decoding above)
    display = attr("VIEW_LAYER", DISPLAY_COLORS_PROP)
    linear = vm("MULTIPLY_ADD", vm("SUBTRACT", c, linear), display.outputs["Fac"], linear)
    emit = nt.nodes.new("ShaderNodeEmission")
    clear = nt.nodes.new("ShaderNodeBsdfTransparent")
    mix = nt.nodes.new("ShaderNodeMixShader")
    out = nt.nodes.new("ShaderNodeOutputMaterial")
    nt.links.new(linear, emit.inputs["Color"])
    nt.links.new(fac, mix.inputs["Fac"])
    nt.links.new(clear.outputs[0], mix.inputs[1])
    nt.links.new(emit.outputs[0], mix.inputs[2])
    nt.links.new(mix.outputs[0], out.inputs["Surface"])
    for i, node in enumerate((color, alpha, geo, emit, clear, mix, out)):
        node.location = (200 * (i // 2), -200 * (i % 2))
    mat.diffuse_color = (0.8, 0.6, 0.5, 1.0)  # Solid-mode colour
    return mat


def splat_node_group(created: list | None = None) -> bpy.types.NodeTree:
    """The shared Geometry Nodes group (created on first use; appended to ``created`` when new)."""
    ng = bpy.data.node_groups.get(NODE_GROUP_NAME)
    if ng is not None and ng.get("omg_version") == _VERSION:
        return ng
    ng = bpy.data.node_groups.new(NODE_GROUP_NAME, "GeometryNodeTree")
    ng["omg_version"] = _VERSION
    if created is not None:
        created.append(ng)
    if hasattr(ng, "is_modifier"):
        ng.is_modifier = True
    iface = ng.interface
    iface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    size = iface.new_socket(SPLAT_SCALE_SOCKET, in_out="INPUT", socket_type="NodeSocketFloat")
    size.default_value, size.min_value, size.max_value = SPLAT_SCALE, 0.0, 10.0
    size.description = "Ellipsoid semi-axes in standard deviations of each Gaussian"
    cut = iface.new_socket(MIN_ALPHA_SOCKET, in_out="INPUT", socket_type="NodeSocketFloat")
    cut.default_value, cut.min_value, cut.max_value = 0.02, 0.0, 1.0
    cut.description = "Gaussians below this opacity are not drawn"
    lp = iface.new_socket(LOWPASS_SOCKET, in_out="INPUT", socket_type="NodeSocketFloat")
    lp.default_value, lp.min_value, lp.max_value = LOWPASS, 0.0, 10.0
    lp.description = "Square pixels added to each Gaussian's footprint, as the splatter's low-pass (0: off)"
    width = iface.new_socket(RENDER_WIDTH_SOCKET, in_out="INPUT", socket_type="NodeSocketFloat")
    width.default_value, width.min_value = 1920.0, 1.0
    width.description = "The render's width in pixels (driven from the scene's resolution)"
    for name in VIEW_FRAME_SOCKETS:
        q = iface.new_socket(name, in_out="INPUT", socket_type="NodeSocketFloat")
        q.default_value = 1.0 if name.endswith("W") else 0.0
        q.description = "The rig's bone rotation (quaternion component, driven) that turns the view-dependent Gaussians"
    iface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")

    N = ng.nodes
    L = ng.links
    gin, gout = N.new("NodeGroupInput"), N.new("NodeGroupOutput")

    def attr(name: str, y: int):
        node = N.new("GeometryNodeInputNamedAttribute")
        node.data_type = "FLOAT"
        node.inputs["Name"].default_value = name
        node.location = (-900, y)
        return node.outputs["Attribute"]

    def math(op: str, a, b=None, x: int = -600, y: int = 0):
        node = N.new("ShaderNodeMath")
        node.operation = op
        node.location = (x, y)
        for i, v in enumerate((a, b)):
            if v is None:
                continue
            if isinstance(v, (int, float)):
                node.inputs[i].default_value = float(v)
            else:
                L.new(v, node.inputs[i])
        return node.outputs[0]

    def combine(xs, y: int):
        node = N.new("ShaderNodeCombineXYZ")
        node.location = (-450, y)
        for i, s in enumerate(xs):
            L.new(s, node.inputs[i])
        return node.outputs[0]

    geometry = _growth(ng, gin.outputs["Geometry"], attr, math)

    # colour = 0.5 + C0 * f_dc ; alpha = 1 / (1 + exp(-opacity))
    f_dc = combine([attr(f"f_dc_{i}", 300 - 60 * i) for i in range(3)], 300)
    col = N.new("ShaderNodeVectorMath")
    col.operation = "MULTIPLY_ADD"
    col.location = (-300, 300)
    L.new(f_dc, col.inputs[0])
    col.inputs[1].default_value = (C0, C0, C0)
    col.inputs[2].default_value = (0.5, 0.5, 0.5)
    e = math("EXPONENT", math("MULTIPLY", attr("opacity", 100), -1.0, y=100), y=100, x=-450)
    alpha = math("DIVIDE", 1.0, math("ADD", e, 1.0, x=-300, y=100), x=-150, y=100)
    # the splatter's low-pass in the object's units: lowpass * px^2, px = one render pixel at the
    # Gaussian's depth from the active camera (camera space = the inverse of the camera's transform
    # relative to this object; its x column's length converts object units to camera units)
    cam = N.new("GeometryNodeObjectInfo")
    cam.transform_space = "RELATIVE"
    cam.location = (-1200, -600)
    L.new(N.new("GeometryNodeInputActiveCamera").outputs[0], cam.inputs["Object"])
    inv = N.new("FunctionNodeInvertMatrix")
    inv.location = (-1000, -600)
    L.new(cam.outputs["Transform"], inv.inputs["Matrix"])
    to_cam = N.new("FunctionNodeTransformPoint")
    to_cam.location = (-850, -600)
    L.new(N.new("GeometryNodeInputPosition").outputs[0], to_cam.inputs["Vector"])
    L.new(inv.outputs["Matrix"], to_cam.inputs["Transform"])
    sep = N.new("ShaderNodeSeparateXYZ")
    sep.location = (-700, -600)
    L.new(to_cam.outputs["Vector"], sep.inputs[0])
    unit_dir = N.new("FunctionNodeTransformDirection")
    unit_dir.location = (-850, -700)
    unit_dir.inputs["Direction"].default_value = (1.0, 0.0, 0.0)
    L.new(inv.outputs["Matrix"], unit_dir.inputs["Transform"])
    unit_len = N.new("ShaderNodeVectorMath")
    unit_len.operation = "LENGTH"
    unit_len.location = (-700, -700)
    L.new(unit_dir.outputs["Direction"], unit_len.inputs[0])
    depth = math("MAXIMUM", math("MULTIPLY", sep.outputs["Z"], -1.0, y=-600), 0.0, y=-600)  # cameras look along -z
    # one render pixel at unit depth (or an orthographic camera's pixel): 2 / (P[0][0] width); no
    # active camera (Camera Info's focal length 0): no pixel, no low-pass
    info = N.new("GeometryNodeCameraInfo")
    info.location = (-1200, -800)
    L.new(N.new("GeometryNodeInputActiveCamera").outputs[0], info.inputs["Camera"])
    proj = N.new("FunctionNodeSeparateMatrix")
    proj.location = (-1050, -800)
    L.new(info.outputs["Projection Matrix"], proj.inputs[0])
    has_camera = math("GREATER_THAN", info.outputs["Focal Length"], 0.0, x=-1050, y=-900)
    unit_px = math("MULTIPLY", math("DIVIDE", 2.0, math("MULTIPLY", proj.outputs["Column 1 Row 1"],
                                                         gin.outputs[RENDER_WIDTH_SOCKET], x=-950, y=-800),
                                    x=-900, y=-800), has_camera, x=-850, y=-800)
    ortho = info.outputs["Is Orthographic"]
    pixel_angle = math("MULTIPLY", unit_px, math("SUBTRACT", 1.0, ortho, x=-800, y=-850), x=-750, y=-850)
    ortho_pixel = math("MULTIPLY", unit_px, ortho, x=-750, y=-900)
    px_cam = math("ADD", math("MULTIPLY", depth, pixel_angle, y=-650), ortho_pixel, y=-650)
    px = math("DIVIDE", px_cam, unit_len.outputs["Value"], y=-700)
    lowpass_var = math("MULTIPLY", math("MULTIPLY", px, px, y=-700), gin.outputs[LOWPASS_SOCKET], y=-700)
    # ellipsoid semi-axes: sqrt(exp(log scale)^2 + low-pass variance) * Splat Scale
    sq = N.new("ShaderNodeVectorMath")
    sq.operation = "MULTIPLY"
    sq.location = (-400, -100)
    sd_rest = combine([math("EXPONENT", attr(f"scale_{i}", -100 - 60 * i), y=-100 - 60 * i) for i in range(3)], -100)
    # the view-dependent Gaussians: their share w of the source view's colour and size at this
    # frame's camera, the side colour and the grown size for the rest (view_colors.py)
    weight = _view_weight(ng, gin, cam, has_camera, ortho, attr, math)
    view_grow = math("ADD", weight, math("MULTIPLY", math("SUBTRACT", 1.0, weight, x=-700, y=-400),
                                         attr(VIEW_GROW_ATTRIBUTE, -420), x=-600, y=-400), x=-500, y=-400)
    has_grow = math("GREATER_THAN", attr(VIEW_GROW_ATTRIBUTE, -450), 0.0, x=-500, y=-450)  # none (a .ply): 1
    view_scale = math("ADD", 1.0, math("MULTIPLY", math("SUBTRACT", view_grow, 1.0, x=-450, y=-450), has_grow,
                                       x=-400, y=-450), x=-350, y=-450)
    grown = N.new("ShaderNodeVectorMath")   # the frame's growth (omg_growth, stored by _growth) and the view's
    grown.operation = "SCALE"
    grown.location = (-425, -100)
    L.new(sd_rest, grown.inputs[0])
    L.new(math("MULTIPLY", attr(GROWTH_ATTRIBUTE, -300), view_scale, x=-450, y=-300), grown.inputs["Scale"])
    sd = grown.outputs[0]
    L.new(sd, sq.inputs[0])
    L.new(sd, sq.inputs[1])
    var = N.new("ShaderNodeVectorMath")
    var.operation = "ADD"
    var.location = (-350, -100)
    L.new(sq.outputs[0], var.inputs[0])
    L.new(combine([lowpass_var] * 3, -250), var.inputs[1])
    sd_lp = N.new("ShaderNodeVectorMath")
    sd_lp.operation = "POWER"
    sd_lp.location = (-325, -100)
    L.new(var.outputs[0], sd_lp.inputs[0])
    sd_lp.inputs[1].default_value = (0.5, 0.5, 0.5)
    scl = N.new("ShaderNodeVectorMath")
    scl.operation = "SCALE"
    scl.location = (-300, -100)
    L.new(sd_lp.outputs[0], scl.inputs[0])
    L.new(gin.outputs[SPLAT_SCALE_SOCKET], scl.inputs["Scale"])
    rot = N.new("FunctionNodeQuaternionToRotation")
    rot.location = (-450, -350)
    for i, key in enumerate(("W", "X", "Y", "Z")):
        L.new(attr(f"rot_{i}", -350 - 60 * i), rot.inputs[key])

    store_c = N.new("GeometryNodeStoreNamedAttribute")
    store_c.data_type, store_c.domain = "FLOAT_COLOR", "POINT"
    store_c.inputs["Name"].default_value = COLOR_ATTRIBUTE
    store_c.location = (0, 200)
    store_s = N.new("GeometryNodeStoreNamedAttribute")
    store_s.data_type, store_s.domain = "FLOAT", "POINT"
    store_s.inputs["Name"].default_value = SIGMA_ATTRIBUTE
    store_s.location = (400, 200)
    store_a = N.new("GeometryNodeStoreNamedAttribute")
    store_a.data_type, store_a.domain = "FLOAT", "POINT"
    store_a.inputs["Name"].default_value = ALPHA_ATTRIBUTE
    store_a.location = (200, 200)
    side = N.new("GeometryNodeInputNamedAttribute")
    side.data_type = "FLOAT_VECTOR"
    side.inputs["Name"].default_value = VIEW_SIDE_ATTRIBUTE
    side.location = (-450, 420)
    diff = N.new("ShaderNodeVectorMath")
    diff.operation = "SUBTRACT"
    diff.location = (-250, 300)
    L.new(col.outputs[0], diff.inputs[0])
    L.new(side.outputs["Attribute"], diff.inputs[1])
    seen = N.new("ShaderNodeVectorMath")       # side + w (colour - side)
    seen.operation = "MULTIPLY_ADD"
    seen.location = (-150, 300)
    L.new(diff.outputs[0], seen.inputs[0])
    L.new(combine([weight] * 3, 350), seen.inputs[1])
    L.new(side.outputs["Attribute"], seen.inputs[2])
    # on the centres too (the evaluated mesh keeps it: tests, exports)
    store_w = N.new("GeometryNodeStoreNamedAttribute")
    store_w.data_type, store_w.domain = "FLOAT", "POINT"
    store_w.inputs["Name"].default_value = VIEW_WEIGHT_ATTRIBUTE
    store_w.location = (-150, 500)
    L.new(geometry, store_w.inputs["Geometry"])
    L.new(weight, store_w.inputs["Value"])
    geometry = store_w.outputs["Geometry"]
    L.new(geometry, store_c.inputs["Geometry"])
    L.new(seen.outputs["Vector"], store_c.inputs["Value"])
    L.new(store_c.outputs["Geometry"], store_a.inputs["Geometry"])
    L.new(alpha, store_a.inputs["Value"])

    ico = N.new("GeometryNodeMeshIcoSphere")
    ico.inputs["Radius"].default_value = 1.0
    ico.inputs["Subdivisions"].default_value = 1
    ico.location = (0, -200)
    store_l = N.new("GeometryNodeStoreNamedAttribute")
    store_l.data_type, store_l.domain = "FLOAT_VECTOR", "POINT"
    store_l.inputs["Name"].default_value = LOCAL_ATTRIBUTE
    store_l.location = (100, -300)
    L.new(ico.outputs["Mesh"], store_l.inputs["Geometry"])
    L.new(N.new("GeometryNodeInputPosition").outputs[0], store_l.inputs["Value"])
    smooth = N.new("GeometryNodeSetShadeSmooth")
    smooth.location = (200, -200)
    L.new(store_l.outputs["Geometry"], smooth.inputs["Geometry"])
    setmat = N.new("GeometryNodeSetMaterial")
    setmat.inputs["Material"].default_value = splat_material(created)
    setmat.location = (400, -200)
    L.new(smooth.outputs["Geometry"], setmat.inputs["Geometry"])

    visible = N.new("FunctionNodeCompare")
    visible.data_type, visible.operation = "FLOAT", "GREATER_THAN"
    visible.location = (200, 0)
    L.new(alpha, visible.inputs[0])
    L.new(gin.outputs[MIN_ALPHA_SOCKET], visible.inputs[1])

    inst = N.new("GeometryNodeInstanceOnPoints")
    inst.location = (600, 100)
    L.new(store_a.outputs["Geometry"], store_s.inputs["Geometry"])
    L.new(gin.outputs[SPLAT_SCALE_SOCKET], store_s.inputs["Value"])
    L.new(store_s.outputs["Geometry"], inst.inputs["Points"])
    L.new(visible.outputs[0], inst.inputs["Selection"])
    L.new(setmat.outputs["Geometry"], inst.inputs["Instance"])
    L.new(rot.outputs[0], inst.inputs["Rotation"])
    L.new(scl.outputs[0], inst.inputs["Scale"])

    # the centres first (unchanged vertex order), then the splats
    join = N.new("GeometryNodeJoinGeometry")
    join.location = (800, 0)
    L.new(inst.outputs["Instances"], join.inputs[0])
    L.new(geometry, join.inputs[0])
    L.new(join.outputs[0], gout.inputs[0])
    gin.location, gout.location = (-1200, 0), (1000, 0)
    return ng


def _view_weight(ng: bpy.types.NodeTree, gin, camera, has_camera, ortho, attr, math):
    """Each point's share of its source-view colour and size at the active camera (the socket of a
    float field in [0, 1]; 1 on the points without view data): splat_data.view_weights in nodes.
    The point's direction to the source camera (VIEW_TOWARD_ATTRIBUTE, the object's frame at rest)
    is turned by its view frame, the normalized blend of the global bone's and the neck's world
    rotations by its weight in the "global" vertex group (the rotations are the modifier's driven
    inputs: the bones' local quaternions in the model frame, so the neck's world rotation is the
    global's times its own), and compared with its direction to the camera (``camera``: the active
    camera's Object Info relative to the object; ``ortho`` 1: an orthographic camera, whose own
    backward axis it is): smoothstep between FAR_DEG and NEAR_DEG, as the backend blends. Without
    a scene camera (``has_camera`` 0) every Gaussian shows the source view's colour and size."""
    import math as pymath

    from ..backend.avatar.view_colors import FAR_DEG, NEAR_DEG

    N, L = ng.nodes, ng.links

    def node(kind: str, x: int, y: int, **props):
        n = N.new(kind)
        n.location = (x, y)
        for k, v in props.items():
            setattr(n, k, v)
        return n

    def quat(bone: str, y: int):
        q = node("FunctionNodeQuaternionToRotation", -1700, y)
        for c in "WXYZ":
            L.new(gin.outputs[f"{bone} {c}"], q.inputs[c])
        return q.outputs[0]

    def components(rotation, y: int) -> list:
        """w, x, y, z of a rotation, on the w >= 0 hemisphere (as the backend's joints)."""
        q = node("FunctionNodeRotationToQuaternion", -1550, y)
        L.new(rotation, q.inputs[0])
        sign = math("SUBTRACT", 1.0, math("MULTIPLY", math("LESS_THAN", q.outputs["W"], 0.0, x=-1450, y=y), 2.0,
                                          x=-1400, y=y), x=-1350, y=y)
        return [math("MULTIPLY", q.outputs[c], sign, x=-1300, y=y - 40 * i) for i, c in enumerate("WXYZ")]

    g = quat("Global", -1000)
    neck = node("FunctionNodeRotateRotation", -1550, -1150, rotation_space="GLOBAL")  # R_global R_neck
    L.new(quat("Neck", -1150), neck.inputs["Rotation"])
    L.new(g, neck.inputs["Rotate By"])
    qg, qn = components(g, -1000), components(neck.outputs[0], -1150)
    share = attr("global", -1300)  # the vertex group's weight (0 where there is none: the neck's frame)
    blend = node("FunctionNodeQuaternionToRotation", -1100, -1100)
    # share * global + (1 - share) * neck; its length only scales the turned direction, normalized below
    for c, a, b in zip("WXYZ", qg, qn):
        L.new(math("ADD", b, math("MULTIPLY", math("SUBTRACT", a, b, x=-1250, y=-1100), share, x=-1200, y=-1100),
                   x=-1150, y=-1100), blend.inputs[c])
    # the stored direction is in the Blender frame; the rotations are the model frame's (x, z, -y)
    toward = node("GeometryNodeInputNamedAttribute", -1700, -1300, data_type="FLOAT_VECTOR")
    toward.inputs["Name"].default_value = VIEW_TOWARD_ATTRIBUTE
    t = node("ShaderNodeSeparateXYZ", -1550, -1300)
    L.new(toward.outputs["Attribute"], t.inputs[0])
    t_model = node("ShaderNodeCombineXYZ", -1400, -1300)
    L.new(t.outputs["X"], t_model.inputs["X"])
    L.new(t.outputs["Z"], t_model.inputs["Y"])
    L.new(math("MULTIPLY", t.outputs["Y"], -1.0, x=-1450, y=-1350), t_model.inputs["Z"])
    turned = node("FunctionNodeRotateVector", -1000, -1250)
    L.new(t_model.outputs[0], turned.inputs["Vector"])
    L.new(blend.outputs[0], turned.inputs["Rotation"])
    tm = node("ShaderNodeSeparateXYZ", -900, -1250)
    L.new(turned.outputs[0], tm.inputs[0])
    t_scene = node("ShaderNodeCombineXYZ", -800, -1250)   # back to the Blender frame: (x, -z, y)
    L.new(tm.outputs["X"], t_scene.inputs["X"])
    L.new(math("MULTIPLY", tm.outputs["Z"], -1.0, x=-850, y=-1300), t_scene.inputs["Y"])
    L.new(tm.outputs["Y"], t_scene.inputs["Z"])
    to_cam = node("ShaderNodeVectorMath", -900, -1400, operation="SUBTRACT")
    L.new(camera.outputs["Location"], to_cam.inputs[0])
    L.new(node("GeometryNodeInputPosition", -1100, -1450).outputs[0], to_cam.inputs[1])
    persp = node("ShaderNodeVectorMath", -800, -1400, operation="NORMALIZE")
    L.new(to_cam.outputs["Vector"], persp.inputs[0])
    back = node("FunctionNodeRotateVector", -900, -1500)   # an orthographic camera looks along its -Z
    back.inputs["Vector"].default_value = (0.0, 0.0, 1.0)
    L.new(camera.outputs["Rotation"], back.inputs["Rotation"])
    swap = node("ShaderNodeVectorMath", -800, -1500, operation="SUBTRACT")
    L.new(back.outputs[0], swap.inputs[0])
    L.new(persp.outputs["Vector"], swap.inputs[1])
    pick = node("ShaderNodeVectorMath", -750, -1450, operation="SCALE")
    L.new(swap.outputs["Vector"], pick.inputs[0])
    L.new(ortho, pick.inputs["Scale"])
    d = node("ShaderNodeVectorMath", -700, -1450, operation="ADD")   # persp + ortho (back - persp)
    L.new(persp.outputs["Vector"], d.inputs[0])
    L.new(pick.outputs["Vector"], d.inputs[1])
    u = node("ShaderNodeVectorMath", -700, -1300, operation="NORMALIZE")
    L.new(t_scene.outputs[0], u.inputs[0])
    cos = node("ShaderNodeVectorMath", -600, -1350, operation="DOT_PRODUCT")
    L.new(d.outputs["Vector"], cos.inputs[0])
    L.new(u.outputs["Vector"], cos.inputs[1])
    ramp = node("ShaderNodeMapRange", -500, -1350, data_type="FLOAT", interpolation_type="SMOOTHSTEP", clamp=True)
    L.new(cos.outputs["Value"], ramp.inputs["Value"])
    ramp.inputs["From Min"].default_value = pymath.cos(pymath.radians(FAR_DEG))
    ramp.inputs["From Max"].default_value = pymath.cos(pymath.radians(NEAR_DEG))
    ramp.inputs["To Min"].default_value = 0.0
    ramp.inputs["To Max"].default_value = 1.0
    length = node("ShaderNodeVectorMath", -700, -1200, operation="LENGTH")
    L.new(toward.outputs["Attribute"], length.inputs[0])
    plain = math("LESS_THAN", length.outputs["Value"], 0.5, x=-500, y=-1200)   # no direction: view-independent
    no_camera = math("SUBTRACT", 1.0, has_camera, x=-500, y=-1150)
    return math("MAXIMUM", math("MAXIMUM", ramp.outputs["Result"], plain, x=-400, y=-1250), no_camera,
                x=-300, y=-1250)


def _growth(ng: bpy.types.NodeTree, geometry, attr, math):
    """The splats' per-frame growth as the backend poses it (backend.avatar.stretch_growth), on an
    avatar LOD mesh that carries its data (scene_write._growth_edges). Returns the geometry with the
    point attributes GROWTH_BASE_ATTRIBUTE (the LOD-0 rows' factors) and GROWTH_ATTRIBUTE (every
    Gaussian's) and without edges (they are not drawn). A LOD-0 row's stretch is the largest length
    ratio, posed against rest, of its edges (the mesh's only edges are the counted ones): Edges of
    Vertex sorted by minus the ratio puts the largest first. Its factor is clip(stretch / allowance,
    1, cap) (Math's Divide gives 0 for an allowance of 0: factor 1, as the backend holds those rows);
    every Gaussian blends its upsampling parents' factors, 1 + sum_k w_k (g_k - 1), so a weight of 0
    and a missing attribute (the parts, an imported .ply) leave it at 1."""
    from ..backend.avatar.stretch_growth import GROWTH_CAP

    N, L = ng.nodes, ng.links
    ends = N.new("GeometryNodeInputMeshEdgeVertices")
    ends.location = (-1500, 600)
    dist = N.new("ShaderNodeVectorMath")
    dist.operation = "DISTANCE"
    dist.location = (-1350, 600)
    L.new(ends.outputs["Position 1"], dist.inputs[0])
    L.new(ends.outputs["Position 2"], dist.inputs[1])
    ratio = math("DIVIDE", dist.outputs["Value"], attr(GROW_REST_ATTRIBUTE, 650), x=-1200, y=600)
    largest_first = N.new("GeometryNodeEdgesOfVertex")
    largest_first.location = (-1050, 650)
    L.new(math("MULTIPLY", ratio, -1.0, x=-1100, y=700), largest_first.inputs["Weights"])
    largest = N.new("GeometryNodeSampleIndex")
    largest.data_type, largest.domain = "FLOAT", "EDGE"
    largest.location = (-900, 600)
    L.new(geometry, largest.inputs["Geometry"])
    L.new(ratio, largest.inputs["Value"])
    L.new(largest_first.outputs["Edge Index"], largest.inputs["Index"])
    has_edges = N.new("FunctionNodeCompare")
    has_edges.data_type, has_edges.operation = "INT", "GREATER_THAN"
    has_edges.location = (-900, 750)
    L.new(largest_first.outputs["Total"], has_edges.inputs[2])
    has_edges.inputs[3].default_value = 0
    stretch = math("MULTIPLY", largest.outputs["Value"], has_edges.outputs["Result"], x=-750, y=600)
    base = math("MINIMUM", math("MAXIMUM", math("DIVIDE", stretch, attr(GROW_ATTRIBUTE, 550), x=-650, y=600),
                                1.0, x=-550, y=600), float(GROWTH_CAP), x=-450, y=600)

    def store(geo, name: str, value, x: int):
        node = N.new("GeometryNodeStoreNamedAttribute")
        node.data_type, node.domain = "FLOAT", "POINT"
        node.inputs["Name"].default_value = name
        node.location = (x, 500)
        L.new(geo, node.inputs["Geometry"])
        L.new(value, node.inputs["Value"])
        return node.outputs["Geometry"]

    with_base = store(geometry, GROWTH_BASE_ATTRIBUTE, base, -300)
    blended = 1.0
    for k, (pa, wa) in enumerate(zip(GROW_PARENT_ATTRIBUTES, GROW_WEIGHT_ATTRIBUTES)):
        parent = N.new("GeometryNodeSampleIndex")
        parent.data_type, parent.domain = "FLOAT", "POINT"
        parent.location = (-150, 400 - 120 * k)
        L.new(with_base, parent.inputs["Geometry"])
        L.new(attr(GROWTH_BASE_ATTRIBUTE, 400 - 120 * k), parent.inputs["Value"])
        index = N.new("GeometryNodeInputNamedAttribute")
        index.data_type = "INT"
        index.inputs["Name"].default_value = pa
        index.location = (-300, 350 - 120 * k)
        L.new(index.outputs["Attribute"], parent.inputs["Index"])
        term = math("MULTIPLY", math("SUBTRACT", parent.outputs["Value"], 1.0, x=0, y=400 - 120 * k),
                    attr(wa, 330 - 120 * k), x=100, y=400 - 120 * k)
        blended = math("ADD", blended, term, x=200, y=400 - 120 * k)
    grown = store(with_base, GROWTH_ATTRIBUTE, blended, 300)
    no_edges = N.new("GeometryNodeDeleteGeometry")
    no_edges.domain, no_edges.mode = "EDGE", "EDGE_FACE"
    no_edges.location = (450, 500)
    L.new(grown, no_edges.inputs["Geometry"])
    return no_edges.outputs["Geometry"]


def add_display(obj: bpy.types.Object, splat_scale: float = SPLAT_SCALE, created: list | None = None
                ) -> bpy.types.NodesModifier:
    """Add the splat modifier as the last modifier of ``obj`` (after any Armature)."""
    ng = splat_node_group(created)
    mod = obj.modifiers.new(MODIFIER_NAME, "NODES")
    mod.node_group = ng
    ident = ng.interface.items_tree[SPLAT_SCALE_SOCKET].identifier
    mod[ident] = float(splat_scale)
    mats = obj.data.materials
    if MATERIAL_NAME not in [m.name for m in mats if m is not None]:
        mats.append(splat_material(created))
    drive_render_width(obj, mod)
    return mod


def drive_render_width(obj: bpy.types.Object, mod: bpy.types.NodesModifier, scene: bpy.types.Scene | None = None
                       ) -> None:
    """Drive the modifier's Render Width from ``scene``'s resolution and percentage (default: the
    scene ``obj`` is first linked to): a simple expression of the scene's own render settings, so it
    runs without Python (auto-run scripts off) and never fails, camera or not."""
    scene = scene or (obj.users_scene[0] if obj.users_scene else bpy.context.scene)
    path = f'modifiers["{mod.name}"]["{mod.node_group.interface.items_tree[RENDER_WIDTH_SOCKET].identifier}"]'
    obj.driver_remove(path)
    drv = obj.driver_add(path).driver
    drv.type = "SCRIPTED"
    for name, data_path in (("rx", "render.resolution_x"), ("pct", "render.resolution_percentage")):
        var = drv.variables.new()
        var.name, var.type = name, "SINGLE_PROP"
        tgt = var.targets[0]
        tgt.id_type, tgt.id, tgt.data_path = "SCENE", scene, data_path
    drv.expression = "max(rx * pct / 100, 1)"


def drive_view_frames(obj: bpy.types.Object, mod: bpy.types.NodesModifier, rig: bpy.types.Object) -> None:
    """Drive the modifier's view-frame inputs (VIEW_FRAME_SOCKETS) from ``rig``'s global and neck
    bones: each one a single-variable driver of the bone's local rotation (quaternion component,
    local space: what the Armature modifier deforms with; no Python runs), whatever rotation mode
    the bone is keyed in."""
    ng = mod.node_group
    for name in VIEW_FRAME_SOCKETS:
        bone, comp = name.split()
        path = f'modifiers["{mod.name}"]["{ng.interface.items_tree[name].identifier}"]'
        obj.driver_remove(path)
        drv = obj.driver_add(path).driver
        drv.type = "AVERAGE"
        var = drv.variables.new()
        var.name, var.type = "q", "TRANSFORMS"
        tgt = var.targets[0]
        tgt.id, tgt.bone_target = rig, bone.lower()
        tgt.transform_type, tgt.rotation_mode, tgt.transform_space = f"ROT_{comp}", "QUATERNION", "LOCAL_SPACE"
