"""Runs inside Blender (`blender -b --factory-startup --python blender_render_thuman.py -- '<json>'`): the released
THuman render settings, reimplemented from the spec (docs/benchmarks.md): orthographic camera, ortho_scale 1.2, aimed
at the origin by a TRACK_TO constraint (-Z forward, Y up), 256x256 RGBA on a transparent film, Cycles on the CPU with
the released sample count, diffuse and glossy bounces 1, denoising on (where this Blender build has a denoiser), a
uniform grey environment of 0.7 at strength 1.

The OBJ it gets is already in the z-up world (normalised by the caller), so the importer's axis rotation is undone.
Writes `<out>/NNN.png` per camera and `<out>/timings.json` (import seconds, seconds per render).
"""
import json
import sys
import time

import bpy  # noqa: E402  (only inside Blender)

args = json.loads(sys.argv[sys.argv.index("--") + 1])
t_start = time.perf_counter()
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.wm.obj_import(filepath=args["obj"])
for obj in bpy.context.scene.objects:
    obj.rotation_euler = (0.0, 0.0, 0.0)  # the file is in the world frame already
t_import = time.perf_counter() - t_start

scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.device = "CPU"
scene.cycles.samples = int(args["samples"])
scene.cycles.diffuse_bounces = 1
scene.cycles.glossy_bounces = 1
denoiser = bool(getattr(bpy.app.build_options, "openimagedenoise", False))
scene.cycles.use_denoising = denoiser
scene.render.film_transparent = True
scene.render.resolution_x = scene.render.resolution_y = int(args["size"])
scene.render.resolution_percentage = 100
scene.render.image_settings.file_format = "PNG"
scene.render.image_settings.color_mode = "RGBA"

world = bpy.data.worlds.new("grey")
scene.world = world
world.use_nodes = True
background = world.node_tree.nodes["Background"]
background.inputs[0].default_value = (0.7, 0.7, 0.7, 1.0)
background.inputs[1].default_value = 1.0

camera_data = bpy.data.cameras.new("camera")
camera_data.type = "ORTHO"
camera_data.ortho_scale = 1.2
camera_data.clip_start, camera_data.clip_end = 0.1, 100.0
camera = bpy.data.objects.new("camera", camera_data)
scene.collection.objects.link(camera)
scene.camera = camera
target = bpy.data.objects.new("target", None)
scene.collection.objects.link(target)
constraint = camera.constraints.new(type="TRACK_TO")
constraint.target = target
constraint.track_axis = "TRACK_NEGATIVE_Z"
constraint.up_axis = "UP_Y"

renders = []
for i, location in enumerate(args["cameras"]):
    camera.location = tuple(location)
    scene.render.filepath = f"{args['out']}/{i:03d}.png"
    t0 = time.perf_counter()
    bpy.ops.render.render(write_still=True)
    renders.append(time.perf_counter() - t0)

with open(f"{args['out']}/timings.json", "w") as fh:
    json.dump({"import_seconds": t_import, "render_seconds": renders, "denoiser": denoiser,
               "blender": bpy.app.version_string, "threads": scene.render.threads}, fh)
