"""Viewport/render display of Gaussian objects: a Geometry Nodes modifier + an emissive splat material.

A Gaussian object is a mesh of loose vertices (the centres) with the 3DGS point attributes. The
node group instances a low-poly ellipsoid on every vertex, oriented by ``rot_0..3`` (w, x, y, z,
Blender frame) and sized by ``exp(scale_i) * Splat Scale`` (the ellipsoid's semi-axes in standard
deviations), stores the colour ``0.5 + C0 * f_dc`` and the alpha ``sigmoid(opacity)`` on the
instances, and joins the original vertices back in front of the instances. So the evaluated mesh
(depsgraph) still holds exactly the deformed centres in order (export and tests read it), while the
instances draw the splats. The material is unlit (emission: the colours are radiance, as in 3DGS)
mixed with transparency by a Gaussian falloff across each instance, computed in instance space: the
avatar's Gaussians are flat discs on the surface, so a point of the unit sphere at instance position
p lies ``rho = |p - (p.a) a|`` semi-axes from the centre within the disc's plane (a = the thinnest
axis), i.e. ``k rho`` standard deviations (k = Splat Scale), and its alpha is
``opacity exp(-0.5 k^2 rho^2)``. Back faces are transparent, so each instance is counted once,
like a splat. It reads the instance attributes with Attribute nodes of type Instancer, which Material
Preview, EEVEE and Cycles all support; Splat Scale reaches it as an instance attribute too.
Node group and material are shared by every Gaussian object and created once per file.
"""

from __future__ import annotations

import bpy

NODE_GROUP_NAME = "OMG Gaussian Splats"
MATERIAL_NAME = "OMG Gaussian Splat"
MODIFIER_NAME = "OMG Splats"
SPLAT_SCALE_SOCKET = "Splat Scale"
MIN_ALPHA_SOCKET = "Min Opacity"
COLOR_ATTRIBUTE = "omg_color"
ALPHA_ATTRIBUTE = "omg_alpha"
SIGMA_ATTRIBUTE = "omg_sigmas"  # the ellipsoid's semi-axes in standard deviations (Splat Scale)
LOCAL_ATTRIBUTE = "omg_local"   # instance-space position on the unit sphere (per instanced vertex)
THIN_ATTRIBUTE = "omg_thin"     # one-hot of the Gaussian's thinnest axis (per instance)
C0 = 0.28209479177387814  # SH degree-0 basis constant (backend.avatar.ply.C0)
_VERSION = 4  # bump when the node layout changes: older files get a fresh group


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
    nt = mat.node_tree
    nt.nodes.clear()
    color = nt.nodes.new("ShaderNodeAttribute")
    color.attribute_type, color.attribute_name = "INSTANCER", COLOR_ATTRIBUTE
    alpha = nt.nodes.new("ShaderNodeAttribute")
    alpha.attribute_type, alpha.attribute_name = "INSTANCER", ALPHA_ATTRIBUTE
    sig = nt.nodes.new("ShaderNodeAttribute")
    sig.attribute_type, sig.attribute_name = "INSTANCER", SIGMA_ATTRIBUTE
    geo = nt.nodes.new("ShaderNodeNewGeometry")

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

    local = nt.nodes.new("ShaderNodeAttribute")
    local.attribute_type, local.attribute_name = "GEOMETRY", LOCAL_ATTRIBUTE
    thin = nt.nodes.new("ShaderNodeAttribute")
    thin.attribute_type, thin.attribute_name = "INSTANCER", THIN_ATTRIBUTE

    def vdot(a, b):
        node = nt.nodes.new("ShaderNodeVectorMath")
        node.operation = "DOT_PRODUCT"
        nt.links.new(a, node.inputs[0])
        nt.links.new(b, node.inputs[1])
        return node.outputs["Value"]

    along = vdot(local.outputs["Vector"], thin.outputs["Vector"])           # along the thinnest axis
    rho2 = m("SUBTRACT", vdot(local.outputs["Vector"], local.outputs["Vector"]), m("MULTIPLY", along, along))
    k2 = m("MULTIPLY", sig.outputs["Fac"], sig.outputs["Fac"])
    falloff = m("EXPONENT", m("MULTIPLY", m("MULTIPLY", rho2, k2), -0.5))   # exp(-0.5 k^2 rho^2)
    front = m("SUBTRACT", 1.0, geo.outputs["Backfacing"])
    fac = m("MULTIPLY", m("MULTIPLY", alpha.outputs["Fac"], falloff), front)
    # the colours are display (sRGB) values like the photo's; shading works in linear light
    gamma = nt.nodes.new("ShaderNodeGamma")
    gamma.inputs["Gamma"].default_value = 2.2
    emit = nt.nodes.new("ShaderNodeEmission")
    clear = nt.nodes.new("ShaderNodeBsdfTransparent")
    mix = nt.nodes.new("ShaderNodeMixShader")
    out = nt.nodes.new("ShaderNodeOutputMaterial")
    nt.links.new(color.outputs["Color"], gamma.inputs["Color"])
    nt.links.new(gamma.outputs["Color"], emit.inputs["Color"])
    nt.links.new(fac, mix.inputs["Fac"])
    nt.links.new(clear.outputs[0], mix.inputs[1])
    nt.links.new(emit.outputs[0], mix.inputs[2])
    nt.links.new(mix.outputs[0], out.inputs["Surface"])
    for i, node in enumerate((color, alpha, gamma, clear, emit, mix, out)):
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
    size.default_value, size.min_value, size.max_value = 2.0, 0.0, 10.0
    size.description = "Ellipsoid semi-axes in standard deviations of each Gaussian"
    cut = iface.new_socket(MIN_ALPHA_SOCKET, in_out="INPUT", socket_type="NodeSocketFloat")
    cut.default_value, cut.min_value, cut.max_value = 0.02, 0.0, 1.0
    cut.description = "Gaussians below this opacity are not drawn"
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
    # ellipsoid semi-axes: exp(log scale) * Splat Scale
    scl = N.new("ShaderNodeVectorMath")
    scl.operation = "SCALE"
    scl.location = (-300, -100)
    L.new(combine([math("EXPONENT", attr(f"scale_{i}", -100 - 60 * i), y=-100 - 60 * i) for i in range(3)], -100),
          scl.inputs[0])
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
    L.new(gin.outputs["Geometry"], store_c.inputs["Geometry"])
    L.new(col.outputs[0], store_c.inputs["Value"])
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
    # one-hot of the thinnest axis: a = s0 is smallest, b = s1 (not a) is, c = the rest
    ls = [attr(f"scale_{i}", -700 - 60 * i) for i in range(3)]
    a0 = math("MULTIPLY", math("SUBTRACT", 1.0, math("LESS_THAN", ls[1], ls[0])),
              math("SUBTRACT", 1.0, math("LESS_THAN", ls[2], ls[0])))
    b0 = math("MULTIPLY", math("SUBTRACT", 1.0, a0), math("SUBTRACT", 1.0, math("LESS_THAN", ls[2], ls[1])))
    c0 = math("SUBTRACT", math("SUBTRACT", 1.0, a0), b0)
    store_t = N.new("GeometryNodeStoreNamedAttribute")
    store_t.data_type, store_t.domain = "FLOAT_VECTOR", "POINT"
    store_t.inputs["Name"].default_value = THIN_ATTRIBUTE
    store_t.location = (500, 200)
    L.new(store_a.outputs["Geometry"], store_t.inputs["Geometry"])
    L.new(combine([a0, b0, c0], -700), store_t.inputs["Value"])
    L.new(store_t.outputs["Geometry"], store_s.inputs["Geometry"])
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
    L.new(gin.outputs["Geometry"], join.inputs[0])
    L.new(join.outputs[0], gout.inputs[0])
    gin.location, gout.location = (-1200, 0), (1000, 0)
    return ng


def add_display(obj: bpy.types.Object, splat_scale: float = 2.0, created: list | None = None
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
    return mod
