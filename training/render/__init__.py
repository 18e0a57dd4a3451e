"""Headless renderer of the ICT-FaceKit morphable face, for synthetic training data and the demo clip.

``FaceModel`` holds the mesh and its shapes (ARKit order), ``Renderer`` draws one ``RenderParams``
into an RGB image with its ground truth (``RenderResult``). OpenGL through moderngl on EGL, so it
runs headless on Mesa llvmpipe; numpy + moderngl + OpenCV only (no torch).

Axes: the model's own axes are the project's head axes (x = performer's left, y up, z out of the
face), in centimetres; the camera is the project's (x = image right, y up, z towards the viewer,
looking down -z), in metres. See ``avatar_bridge.types.FaceState``.

Modules: ``assets`` (the face and its parts), ``shaders`` (GLSL), ``scene`` (``RenderParams`` and
frame sampling), ``backgrounds``, ``renderer`` (``Renderer``, ``RenderResult``). Import from
``training.render``.
"""

from training.render.assets import DEFAULT_ICT_PATH, FaceModel
from training.render.backgrounds import background_image
from training.render.renderer import RenderResult, Renderer, perspective
from training.render.scene import (DEFAULT_FOV_DEG, DEFAULT_HEAD_POSITION, RenderParams, default_params, framing,
                                   gaze_blendshapes, random_params)

__all__ = ["DEFAULT_FOV_DEG", "DEFAULT_HEAD_POSITION", "DEFAULT_ICT_PATH", "FaceModel", "RenderParams", "RenderResult",
           "Renderer", "background_image", "default_params", "framing", "gaze_blendshapes", "perspective",
           "random_params"]
