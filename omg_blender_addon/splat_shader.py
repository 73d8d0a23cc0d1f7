"""The Gaussian splat shader (GLSL through gpu.types.GPUShaderCreateInfo).

One screen-aligned quad per Gaussian, projected exactly like backend.render.projection (the EWA /
gsplat pinhole projection; ``u_ortho``: the orthographic one, u = fx x + cx with the constant Jacobian
diag(fx, fy), depth row applied without the divide by z): the Jacobian at the mean clamped to 1.3x the field of view, the 2D
covariance ``J W T T^T W^T J^T`` plus the same low-pass term ``eps2d`` (0.3 px^2) on its diagonal,
the determinant from the cross product of the two rows (the backend's Cauchy-Binet form, stable in
float32), and the same axis-aligned footprint box: half-extent ``ext sqrt(cov_xx)``,
``ext sqrt(cov_yy)`` with ``ext = min(3.33, sqrt(2 ln(255 opacity)))``. The fragment shader applies
the backend's falloff ``alpha = min(0.999, opacity exp(-sigma))`` with
``sigma = 0.5 (a dx^2 + c dy^2) + b dx dy``, skips ``alpha < 1/255`` and writes premultiplied
colour; quads are drawn back to front (splat_sort) with premultiplied "over" blending.

Pixel convention (the backend's): pixel (j, i) has its centre at (j + 0.5, i + 0.5), row 0 at the
top. The vertex shader places corners in those pixel units and maps them to NDC, so
``gl_FragCoord`` centres coincide with the backend's pixel centres (the framebuffer is read back
bottom row first and flipped).

Depth: every fragment of a splat gets its centre's depth (3DGS sorts and occludes per splat), from
the projection's z row (``depth_row`` = P[2][2], P[2][3] of a GL projection matrix), so Blender's
depth test against scene meshes hides splats behind them.

Colours are display (sRGB) values. ``linear_target`` = 1 converts them to linear before blending,
for framebuffers that encode linear values to sRGB on write (Blender's viewport overlay buffer).

View-dependent splats (splat_data.SplatData's side, toward, grow; ``toward`` zero elsewhere): the
vertex shader weighs the splat's own colour and size against its side colour and grown size by
the angle between ``toward`` and its direction to the camera (``u_eye_near.xyz``: the camera centre, or
for ``u_ortho`` the unit direction towards the camera), the backend's smoothstep between
``FAR_DEG`` and ``NEAR_DEG`` (splat_data.view_weights is the same in numpy).
"""

from __future__ import annotations

import math

from ..backend.avatar.view_colors import FAR_DEG, NEAR_DEG

EPS2D = 0.3          # px^2, backend.render.splat's default eps2d (EWA low-pass)
NEAR_PLANE = 0.01    # metres, backend.render.splat's default near_plane
EXTEND = 3.33        # backend.render.projection.EXTEND

# (GLSL type, name) per vertex, in slot order; SplatBatch fills them (4 vertices per splat)
VERTEX_INPUTS = (("VEC3", "mean"), ("VEC3", "t0"), ("VEC3", "t1"), ("VEC3", "t2"), ("VEC4", "rgba"),
                 ("VEC3", "side"), ("VEC3", "toward"), ("FLOAT", "grow"), ("VEC2", "corner"))

_VERTEX = """
void main()
{
  v_color = vec4(0.0);
  v_conic = vec3(0.0);
  v_d = vec2(0.0);
  vec4 pc = u_view * vec4(mean, 1.0);
  float tz = pc.z;
  float op = rgba.a;
  if (!(tz > u_eye_near.w) || op < ALPHA_MIN) {
    gl_Position = vec4(0.0, 0.0, 2.0, 1.0); /* outside the clip volume: culled */
    return;
  }
  float vw = 1.0; /* the share of the source view's colour and size */
  if (dot(toward, toward) > 0.25) {
    vec3 d = u_ortho != 0 ? u_eye_near.xyz : u_eye_near.xyz - mean;
    float x = clamp((dot(normalize(d), normalize(toward)) - VIEW_LO) / (VIEW_HI - VIEW_LO), 0.0, 1.0);
    vw = x * x * (3.0 - 2.0 * x);
  }
  float fx = u_intr.x, fy = u_intr.y, cx = u_intr.z, cy = u_intr.w;
  float W = u_frame.x, H = u_frame.y;
  float lim_xp = (W - cx) / fx + 0.3 * (0.5 * W / fx);
  float lim_xn = cx / fx + 0.3 * (0.5 * W / fx);
  float lim_yp = (H - cy) / fy + 0.3 * (0.5 * H / fy);
  float lim_yn = cy / fy + 0.3 * (0.5 * H / fy);
  float txc = tz * clamp(pc.x / tz, -lim_xn, lim_xp);
  float tyc = tz * clamp(pc.y / tz, -lim_yn, lim_yp);
  mat3 M = mat3(u_view) * (mat3(t0, t1, t2) * (vw + (1.0 - vw) * grow)); /* camera-frame covariance factor */
  vec3 j0 = vec3(fx / tz, 0.0, -fx * txc / (tz * tz));
  vec3 j1 = vec3(0.0, fy / tz, -fy * tyc / (tz * tz));
  vec2 mean2d = vec2(fx * pc.x / tz + cx, fy * pc.y / tz + cy);
  if (u_ortho != 0) { /* u = fx x + cx: the Jacobian is constant and exact */
    j0 = vec3(fx, 0.0, 0.0);
    j1 = vec3(0.0, fy, 0.0);
    mean2d = vec2(fx * pc.x + cx, fy * pc.y + cy);
  }
  vec3 u = j0 * M; /* rows of J M */
  vec3 w = j1 * M;
  float a0 = dot(u, u);
  float b = dot(u, w);
  float c0 = dot(w, w);
  vec3 m = cross(u, w);
  float det = dot(m, m) + EPS2D_PX2 * (a0 + c0) + EPS2D_PX2 * EPS2D_PX2;
  float a = a0 + EPS2D_PX2;
  float c = c0 + EPS2D_PX2;
  if (!(det > 0.0)) {
    gl_Position = vec4(0.0, 0.0, 2.0, 1.0);
    return;
  }
  float ext = min(EXTEND, sqrt(2.0 * log(op / ALPHA_MIN)));
  vec2 half_ext = ext * sqrt(vec2(a, c));
  vec2 offset = corner * half_ext;
  vec2 p = mean2d + offset;
  v_d = offset;
  v_conic = vec3(c / det, -b / det, a / det);
  v_color = vec4(mix(side, rgba.rgb, vw), op);
  float zn = (u_frame.z * -tz + u_frame.w) / (u_ortho != 0 ? 1.0 : tz);
  gl_Position = vec4(2.0 * p.x / W - 1.0, 1.0 - 2.0 * p.y / H, zn, 1.0);
}
"""

_FRAGMENT = """
void main()
{
  vec2 d = v_d;
  float sigma = 0.5 * (v_conic.x * d.x * d.x + v_conic.z * d.y * d.y) + v_conic.y * d.x * d.y;
  if (sigma < 0.0) {
    discard;
  }
  float alpha = min(MAX_ALPHA, v_color.a * exp(-sigma));
  if (alpha < ALPHA_MIN) {
    discard;
  }
  vec3 rgb = v_color.rgb;
  if (u_linear_target != 0) {
    rgb = mix(rgb / 12.92, pow((rgb + 0.055) / 1.055, vec3(2.4)), step(vec3(0.04045), rgb));
  }
  frag_color = vec4(rgb * alpha, alpha);
}
"""

_SHADER = None


def splat_shader():
    """The compiled shader (created once per session; needs a GPU context)."""
    global _SHADER
    if _SHADER is None:
        import gpu

        iface = gpu.types.GPUStageInterfaceInfo("omg_splat_iface")
        iface.no_perspective("VEC2", "v_d")
        iface.flat("VEC3", "v_conic")
        iface.flat("VEC4", "v_color")
        info = gpu.types.GPUShaderCreateInfo()
        info.define("ALPHA_MIN", "(1.0 / 255.0)")
        info.define("MAX_ALPHA", "0.999")
        info.define("EXTEND", repr(float(EXTEND)))
        info.define("EPS2D_PX2", repr(float(EPS2D)))
        info.define("VIEW_LO", repr(float(math.cos(math.radians(FAR_DEG)))))
        info.define("VIEW_HI", repr(float(math.cos(math.radians(NEAR_DEG)))))
        info.push_constant("MAT4", "u_view")
        info.push_constant("VEC4", "u_intr")
        info.push_constant("VEC4", "u_frame")
        # xyz: the camera's centre (or an orthographic camera's backward axis), w: the near plane,
        # metres; packed so the push constants stay within the 128 bytes every GPU backend has
        info.push_constant("VEC4", "u_eye_near")
        info.push_constant("INT", "u_linear_target")
        info.push_constant("INT", "u_ortho")
        for slot, (typ, name) in enumerate(VERTEX_INPUTS):
            info.vertex_in(slot, typ, name)
        info.vertex_out(iface)
        info.fragment_out(0, "VEC4", "frag_color")
        info.vertex_source(_VERTEX)
        info.fragment_source(_FRAGMENT)
        _SHADER = gpu.shader.create_from_info(info)
    return _SHADER


def release() -> None:
    """Forget the shader (add-on unregister)."""
    global _SHADER
    _SHADER = None
