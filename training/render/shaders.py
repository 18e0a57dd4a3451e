"""The renderer's GLSL: the face mesh (skin, lips, brows, stubble, eyes, lashes), the background
quad, and the pass that bakes the skin's UV-space position map."""

_MESH_VS = """
#version 330
uniform mat3 u_rot;
uniform vec3 u_trans;
uniform mat4 u_proj;
in vec3 in_pos;      // head axes, metres
in vec3 in_normal;
in vec2 in_uv;
in float in_part;
in vec2 in_eye;
out vec3 v_pos;      // camera axes
out vec3 v_normal;
out vec2 v_uv;
flat out int v_part;
out vec2 v_eye;
out float v_head_z;
void main() {
    v_pos = u_rot * in_pos + u_trans;
    v_head_z = in_pos.z;
    v_normal = u_rot * in_normal;
    v_uv = in_uv;
    v_part = int(in_part + 0.5);
    v_eye = in_eye;
    gl_Position = u_proj * vec4(v_pos, 1.0);
}
"""

_MESH_FS = """
#version 330
uniform sampler2D u_skin;     // r: tone variation, g: lips, b: brows, a: stubble
uniform vec3 u_skin_albedo;   // linear
uniform vec3 u_lip_albedo;
uniform vec3 u_hair_albedo;
uniform vec3 u_iris_albedo;
uniform float u_stubble;
uniform vec3 u_light_dir;
uniform float u_light;
uniform float u_ambient;
uniform float u_specular;
uniform float u_iris_radius;
in vec3 v_pos;
in vec3 v_normal;
in vec2 v_uv;
flat in int v_part;
in vec2 v_eye;
in float v_head_z;
out vec4 f_color;
void main() {
    vec3 albedo;
    // No shadows are cast, so the mouth gets darker the deeper a point lies behind the lips
    // (lips at z ~11 cm, back of the mouth ~4 cm, head axes).
    float depth_shade = clamp((v_head_z - 0.06) / 0.05, 0.12, 1.0);
    float shine = u_specular;
    float occlusion = 1.0;
    vec4 t = texture(u_skin, fract(v_uv));
    if (v_part == 0 || v_part == 1) {
        albedo = u_skin_albedo * (0.78 + 0.44 * t.r);
        if (v_part == 0) {
            albedo = mix(albedo, u_lip_albedo * (0.85 + 0.3 * t.r), t.g);
            albedo = mix(albedo, u_hair_albedo, t.b);
            albedo = mix(albedo, u_hair_albedo, t.a * u_stubble * 0.8);
            shine *= 1.0 + 1.5 * t.g;
        }
    } else if (v_part == 2) {            // mouth socket: dark, unlit by the key light
        albedo = vec3(0.10, 0.025, 0.025); occlusion = 0.4 * depth_shade; shine = 0.0;
    } else if (v_part == 3) {
        albedo = u_skin_albedo * vec3(0.6, 0.35, 0.35); occlusion = 0.4; shine = 0.0;
    } else if (v_part == 4) {
        albedo = vec3(0.40, 0.09, 0.09); occlusion = 0.55 * depth_shade;
    } else if (v_part == 5) {
        albedo = vec3(0.80, 0.76, 0.66); occlusion = 0.8 * depth_shade;
    } else if (v_part == 6) {
        // The sclera mesh includes the clear cornea in front of the iris: let the iris show.
        if (v_eye.y > 0.0 && v_eye.x < u_iris_radius) discard;
        albedo = vec3(0.80, 0.76, 0.74); shine = 0.6;
    } else if (v_part == 7) {
        float r = v_eye.x / u_iris_radius;
        float pupil = 1.0 - smoothstep(0.33, 0.38, r);
        float limbus = smoothstep(0.8, 1.0, r);
        albedo = u_iris_albedo * (0.8 + 0.4 * fract(sin(atan(v_pos.y, v_pos.x) * 40.0) * 3.0));
        albedo = mix(albedo, u_iris_albedo * 0.25, limbus);
        albedo = mix(albedo, vec3(0.01), pupil);
        shine = 1.0;
    } else {
        // Eyelash cards (u runs along the lid): keep thin strands so they read as lashes,
        // not as a solid black band.
        if (fract(v_uv.x * 140.0) > 0.3) discard;
        albedo = u_hair_albedo * 0.3; shine = 0.0;
    }
    vec3 n = normalize(v_normal);
    vec3 view = normalize(-v_pos);
    if (dot(n, view) < 0.0) n = -n;      // back faces of thin parts (lashes, lips' inside)
    vec3 l = normalize(u_light_dir);
    float diffuse = max(dot(n, l), 0.0);
    float spec = pow(max(dot(n, normalize(l + view)), 0.0), 40.0);
    // A sky-ish ambient: more from above, less from below.
    float amb = u_ambient * (0.75 + 0.25 * n.y);
    vec3 lin = albedo * (amb + u_light * diffuse) * occlusion + shine * u_light * spec * occlusion;
    f_color = vec4(pow(clamp(lin, 0.0, 1.0), vec3(1.0 / 2.2)), 1.0);
}
"""

_BG_VS = """
#version 330
in vec2 in_pos;
out vec2 v_uv;
void main() { v_uv = vec2(in_pos.x, -in_pos.y) * 0.5 + 0.5; gl_Position = vec4(in_pos, 0.999, 1.0); }
"""
_BG_FS = """
#version 330
uniform sampler2D u_bg;
in vec2 v_uv;
out vec4 f_color;
void main() { f_color = vec4(texture(u_bg, v_uv).rgb, 1.0); }
"""

_BAKE_VS = """
#version 330
in vec2 in_uv;
in vec3 in_pos;
out vec3 v_pos;
void main() { v_pos = in_pos; gl_Position = vec4(in_uv * 2.0 - 1.0, 0.0, 1.0); }
"""
_BAKE_FS = """
#version 330
in vec3 v_pos;
out vec4 f_color;
void main() { f_color = vec4(v_pos, 1.0); }
"""
