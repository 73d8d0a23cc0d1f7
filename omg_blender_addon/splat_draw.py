"""GPU side of the splat display: vertex/index buffers, offscreen renders, the viewport draw handler.

``SplatView`` is a pinhole or orthographic view in the backend's convention (OpenCV axes, K in
pixels; orthographic: fx, fy in pixels per metre), built from a backend Camera, a Blender camera
object or a 3D viewport's matrices. ``SplatBatch`` holds one
SplatData on the GPU (4 vertices per splat) plus an index buffer in back-to-front order.
``render_offscreen`` draws into a float framebuffer and reads it back; the viewport draw handler
(``enable`` / ``disable``) draws every visible Gaussian object after Blender's own drawing, depth
tested against the scene, re-sorting on a worker when the view or the pose changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import bpy
import numpy as np

from .splat_data import SplatData
from .splat_shader import NEAR_PLANE, VERTEX_INPUTS, splat_shader
from .splat_sort import QUAD_CORNERS, Sorter, depth_order, quad_indices

CV_FROM_GL = np.diag([1.0, -1.0, -1.0, 1.0])  # GL/Blender camera axes (looks down -z) <-> OpenCV
_LENGTHS = {"FLOAT": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}


@dataclass
class SplatView:
    """A pinhole (or, ``ortho``, orthographic) view. viewmat (4, 4) float64 world (Blender) ->
    camera, OpenCV axes; fx, fy pixels (orthographic: pixels per metre), cx, cy pixels; width,
    height pixels; near, far metres along the view axis (depth range of the depth test; an
    orthographic viewport's near may be negative)."""

    viewmat: np.ndarray
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    near: float = NEAR_PLANE
    far: float = 1000.0
    ortho: bool = False

    @property
    def depth_row(self) -> tuple[float, float]:
        """(P[2][2], P[2][3]) of the GL projection with this near/far."""
        n, f = self.near, self.far
        if self.ortho:
            return -2.0 / (f - n), -(f + n) / (f - n)
        return -(f + n) / (f - n), -2.0 * f * n / (f - n)

    def projection_gl(self) -> np.ndarray:
        """(4, 4) GL projection matrix (for drawing meshes into the same framebuffer)."""
        W, H = self.width, self.height
        p22, p23 = self.depth_row
        if self.ortho:  # pixel u = fx x + cx, v = fy y + cy (OpenCV axes; GL y and z are flipped)
            return np.array([[2 * self.fx / W, 0.0, 0.0, 2 * self.cx / W - 1.0],
                             [0.0, 2 * self.fy / H, 0.0, 1.0 - 2 * self.cy / H],
                             [0.0, 0.0, p22, p23], [0.0, 0.0, 0.0, 1.0]])
        return np.array([[2 * self.fx / W, 0.0, 1.0 - 2 * self.cx / W, 0.0],
                         [0.0, 2 * self.fy / H, 2 * self.cy / H - 1.0, 0.0],
                         [0.0, 0.0, p22, p23], [0.0, 0.0, -1.0, 0.0]])

    @classmethod
    def from_camera(cls, cam, world_from_model: np.ndarray | None = None, far: float = 1000.0) -> "SplatView":
        """From a backend Camera whose viewmat maps ``world_from_model``-frame points (None: the
        Blender world is the camera's frame)."""
        V = np.asarray(cam.viewmat, np.float64)
        if world_from_model is not None:
            V = V @ np.linalg.inv(np.asarray(world_from_model, np.float64))
        K = np.asarray(cam.K, np.float64)
        return cls(V, K[0, 0], K[1, 1], K[0, 2], K[1, 2], int(cam.width), int(cam.height), far=far)

    @classmethod
    def from_camera_object(cls, cam_obj, width: int, height: int) -> "SplatView":
        """From a Blender perspective or orthographic camera rendered at width x height (square
        pixels)."""
        from .scene_read import SceneError, camera_intrinsics

        data = cam_obj.data
        if data.type not in ("PERSP", "ORTHO"):
            raise SceneError(f"camera '{cam_obj.name}' is {data.type.lower()}: only perspective and "
                             f"orthographic cameras are supported")
        ortho = data.type == "ORTHO"
        if ortho:  # ortho_scale metres span the sensor-fit side, like the sensor width for the lens
            K = camera_intrinsics(1.0, data.ortho_scale, data.ortho_scale,
                                  data.sensor_fit,
                                  data.shift_x, data.shift_y, width, height)
        else:
            K = camera_intrinsics(data.lens, data.sensor_width, data.sensor_height, data.sensor_fit, data.shift_x,
                                  data.shift_y, width, height)
        cw = np.array(cam_obj.matrix_world, np.float64)
        scale = np.linalg.norm(cw[:3, :3], axis=0)
        cw[:3, :3] /= scale  # camera object scale does not change what it sees
        V = CV_FROM_GL @ np.linalg.inv(cw)
        near = float(data.clip_start) if ortho else max(float(data.clip_start), 1e-4)
        return cls(V, K[0, 0], K[1, 1], K[0, 2], K[1, 2], width, height, near=near, far=float(data.clip_end),
                   ortho=ortho)

    @classmethod
    def from_matrices(cls, view_matrix, window_matrix, width: int, height: int) -> "SplatView":
        """From a viewport's view and projection (window) matrices, perspective or orthographic."""
        P = np.array(window_matrix, np.float64)
        V = CV_FROM_GL @ np.array(view_matrix, np.float64)
        W, H = int(width), int(height)
        if abs(P[3, 3]) > 1e-9:  # orthographic: NDC = P[:2, :2] xy + P[:2, 3] (inverse of projection_gl)
            near = (P[2, 3] + 1.0) / P[2, 2]
            far = (P[2, 3] - 1.0) / P[2, 2]
            return cls(V, 0.5 * W * P[0, 0], 0.5 * H * P[1, 1], 0.5 * W * (1.0 + P[0, 3]), 0.5 * H * (1.0 - P[1, 3]),
                       W, H, near=float(near), far=float(far), ortho=True)
        view = cls(V, 0.5 * W * P[0, 0], 0.5 * H * P[1, 1], 0.5 * W * (1.0 - P[0, 2]), 0.5 * H * (1.0 + P[1, 2]), W, H)
        # keep the viewport's own depth mapping so the depth test agrees with Blender's buffer
        view._depth_row = (float(P[2, 2]), float(P[2, 3]))
        return view

    def eye(self) -> np.ndarray:
        """(3,) float64 world: the camera's centre, metres, or for an orthographic view the unit
        direction towards the camera (what view-dependent splats are seen from)."""
        R, t = self.viewmat[:3, :3], self.viewmat[:3, 3]
        if self.ortho:
            return -R[2] / np.linalg.norm(R[2])
        return -np.linalg.solve(R, t)

    def uniforms(self) -> tuple[np.ndarray, tuple, tuple]:
        row = getattr(self, "_depth_row", None) or self.depth_row
        return (self.viewmat, (self.fx, self.fy, self.cx, self.cy), (float(self.width), float(self.height), *row))


class SplatBatch:
    """One SplatData on the GPU (UI thread only). ``set_order`` installs a draw order."""

    def __init__(self, data: SplatData) -> None:
        import gpu

        n = len(data)
        self.n = n
        self.means = data.means
        fmt = gpu.types.GPUVertFormat()
        for typ, name in VERTEX_INPUTS:
            fmt.attr_add(id=name, comp_type="F32", len=_LENGTHS[typ], fetch_mode="FLOAT")
        self.vbo = gpu.types.GPUVertBuf(fmt, 4 * n)
        rep = lambda a: np.ascontiguousarray(np.repeat(np.asarray(a, np.float32), 4, axis=0))  # noqa: E731
        self.vbo.attr_fill("mean", rep(data.means))
        for k in range(3):  # mat3(t0, t1, t2): columns of T
            self.vbo.attr_fill(f"t{k}", rep(data.factors[:, :, k]))
        self.vbo.attr_fill("rgba", rep(np.concatenate([data.colors, data.opacity[:, None]], 1)))
        side, toward, grow = data.view_arrays()
        self.vbo.attr_fill("side", rep(side))
        self.vbo.attr_fill("toward", rep(toward))
        self.vbo.attr_fill("grow", rep(grow))
        self.vbo.attr_fill("corner", np.ascontiguousarray(np.tile(QUAD_CORNERS, (n, 1))))
        self.batch = None
        self.order = None
        self.order_key = None

    def set_order(self, order: np.ndarray, key=None) -> None:
        import gpu

        if self.n == 0:
            self.batch, self.order, self.order_key = None, order, key
            return
        ibo = gpu.types.GPUIndexBuf(type="TRIS", seq=quad_indices(order))
        self.batch = gpu.types.GPUBatch(type="TRIS", buf=self.vbo, elem=ibo)
        self.order, self.order_key = order, key

    def draw(self, view: SplatView, linear_target: bool = False) -> None:
        """Draw with the current order into the bound framebuffer (blending and depth set here,
        restored after)."""
        import gpu
        from mathutils import Matrix

        if self.batch is None:
            return
        shader = splat_shader()
        V, intr, frame = view.uniforms()
        shader.bind()
        shader.uniform_float("u_view", Matrix(V.tolist()))
        shader.uniform_float("u_intr", intr)
        shader.uniform_float("u_frame", frame)
        shader.uniform_int("u_linear_target", int(linear_target))
        shader.uniform_int("u_ortho", int(view.ortho))
        shader.uniform_float("u_eye_near", (*(float(x) for x in view.eye()), float(view.near)))
        gpu.state.blend_set("ALPHA_PREMULT")
        gpu.state.depth_test_set("LESS_EQUAL")
        gpu.state.depth_mask_set(False)
        gpu.state.face_culling_set("NONE")
        try:
            self.batch.draw(shader)
        finally:
            gpu.state.blend_set("NONE")
            gpu.state.depth_test_set("NONE")
            gpu.state.depth_mask_set(False)


# -- headless GPU start-up ------------------------------------------------------------------------
def ensure_gpu() -> None:
    """Make sure Blender's GPU context exists. Blender run in background mode (bpy as a module,
    ``blender -b``) creates it lazily for its first render, so a tiny Workbench render of a
    temporary scene (about 1 s) starts it; the temporary scene is removed again."""
    import gpu

    try:
        gpu.types.GPUOffScreen(4, 4).free()
        return
    except SystemError:
        pass
    scene = bpy.data.scenes.new("OMG GPU start")
    cam_data = bpy.data.cameras.new("OMG GPU start")
    cam = bpy.data.objects.new("OMG GPU start", cam_data)
    try:
        scene.collection.objects.link(cam)
        scene.camera = cam
        scene.render.engine = "BLENDER_WORKBENCH"
        scene.render.resolution_x = scene.render.resolution_y = 4
        bpy.ops.render.render(scene=scene.name)
    finally:
        bpy.data.objects.remove(cam)
        bpy.data.cameras.remove(cam_data)
        bpy.data.scenes.remove(scene)
    gpu.types.GPUOffScreen(4, 4).free()  # raises if the GPU still is not available


# -- occluders: scene meshes write depth so they hide splats behind them ---------------------------
def occluder_triangles(context, exclude: set[str]) -> np.ndarray:
    """(M, 3, 3) float32 world triangles of the visible, renderable mesh objects not in ``exclude``."""
    dg = context.evaluated_depsgraph_get()
    tris = []
    for obj in context.view_layer.objects:
        if obj.type != "MESH" or obj.name in exclude or not obj.visible_get() or obj.hide_render:
            continue
        if obj.omg_avatar.role != "NONE":  # the avatar's control head mesh is not rendered
            continue
        ev = obj.evaluated_get(dg)
        me = ev.to_mesh()
        try:
            me.calc_loop_triangles()
            nt = len(me.loop_triangles)
            if nt == 0:
                continue
            idx = np.empty(nt * 3, np.int32)
            me.loop_triangles.foreach_get("vertices", idx)
            co = np.empty(len(me.vertices) * 3, np.float32)
            me.vertices.foreach_get("co", co)
        finally:
            ev.to_mesh_clear()
        mw = np.array(ev.matrix_world, np.float64)
        pts = co.reshape(-1, 3) @ mw[:3, :3].T + mw[:3, 3]
        tris.append(pts[idx].reshape(-1, 3, 3).astype(np.float32))
    return np.concatenate(tris) if tris else np.zeros((0, 3, 3), np.float32)


def _draw_depth(tris: np.ndarray, view: SplatView) -> None:
    import gpu
    from gpu_extras.batch import batch_for_shader
    from mathutils import Matrix

    if len(tris) == 0:
        return
    shader = gpu.shader.from_builtin("UNIFORM_COLOR")
    batch = batch_for_shader(shader, "TRIS", {"pos": np.ascontiguousarray(tris.reshape(-1, 3))})
    with gpu.matrix.push_pop(), gpu.matrix.push_pop_projection():
        gpu.matrix.load_matrix(Matrix((CV_FROM_GL @ view.viewmat).tolist()))
        gpu.matrix.load_projection_matrix(Matrix(view.projection_gl().tolist()))
        gpu.state.color_mask_set(False, False, False, False)
        gpu.state.depth_test_set("LESS")
        gpu.state.depth_mask_set(True)
        try:
            shader.uniform_float("color", (0.0, 0.0, 0.0, 1.0))
            batch.draw(shader)
        finally:
            gpu.state.color_mask_set(True, True, True, True)
            gpu.state.depth_mask_set(False)
            gpu.state.depth_test_set("NONE")


# -- offscreen ------------------------------------------------------------------------------------
def render_offscreen(data: SplatData, view: SplatView, background=(1.0, 1.0, 1.0),
                     occluders: np.ndarray | None = None) -> np.ndarray:
    """(H, W, 4) float32: RGB composited over ``background`` (display values, like the backend's
    splat image) and the accumulated alpha, row 0 at the top. ``occluders`` (M, 3, 3) world
    triangles write depth first and hide the splats behind them (they show the background)."""
    import gpu

    ensure_gpu()
    W, H = int(view.width), int(view.height)
    batch = SplatBatch(data)
    batch.set_order(depth_order(data.means, view.viewmat))
    off = gpu.types.GPUOffScreen(W, H, format="RGBA32F")
    try:
        with off.bind():
            fb = gpu.state.active_framebuffer_get()
            gpu.state.viewport_set(0, 0, W, H)
            fb.clear(color=(float(background[0]), float(background[1]), float(background[2]), 0.0), depth=1.0)
            if occluders is not None:
                _draw_depth(occluders, view)
            batch.draw(view)
            buf = fb.read_color(0, 0, W, H, 4, 0, "FLOAT")
        img = buffer_array(buf).reshape(H, W, 4)
    finally:
        off.free()
    return np.ascontiguousarray(img[::-1])


def buffer_array(buf) -> np.ndarray:
    """A float32 gpu.types.Buffer as a flat numpy copy. Blender's Buffer exports Fortran-order
    strides for data laid out in C order, so np.asarray alone scrambles it; the memory itself is
    read flat."""
    arr = np.asarray(buf)
    flat = np.lib.stride_tricks.as_strided(arr, shape=(arr.size,), strides=(arr.itemsize,))
    return np.array(flat, np.float32)


def to_uint8(img: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 from render_offscreen's RGB, rounded like the backend preview."""
    return (np.clip(img[..., :3], 0.0, 1.0) * 255.0).round().astype(np.uint8)
