"""M3UNet for ComfyUI: text-guided diffusion image restoration nodes (ComfyUI V3 node API).

This file only registers the nodes. ComfyUI imports it as the custom-node package and calls
:func:`comfy_entrypoint`; nothing heavy (torch, ComfyUI internals, the model code) is imported
until then. The nodes live in ``nodes/``, the restoration library in ``m3unet/``.
"""


async def comfy_entrypoint():
    """Return the ComfyExtension that lists this pack's nodes (called once by ComfyUI at start)."""
    from comfy_api.latest import ComfyExtension, io

    from .nodes import NODE_LIST

    class M3UNetExtension(ComfyExtension):
        async def get_node_list(self) -> list[type[io.ComfyNode]]:
            return list(NODE_LIST)

    return M3UNetExtension()
