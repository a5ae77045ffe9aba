"""M3UNet for ComfyUI: text-guided diffusion image restoration nodes (ComfyUI V3 node API).

This file only registers the nodes. ComfyUI imports it as the custom-node package and calls
:func:`comfy_entrypoint`; nothing heavy (torch, ComfyUI internals, the model code) is imported
until then. The nodes live in ``nodes/``, the restoration library in ``m3unet/``; ``web/`` holds
what the web front end loads (the node help pages ``web/docs/<node id>.md`` and ``web/js``).
"""

WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    """Return the ComfyExtension that lists this pack's nodes (called once by ComfyUI at start)."""
    from comfy_api.latest import ComfyExtension, io

    from .nodes import NODE_LIST, on_load

    class M3UNetExtension(ComfyExtension):
        async def on_load(self) -> None:
            await on_load()

        async def get_node_list(self) -> list[type[io.ComfyNode]]:
            return list(NODE_LIST)

    return M3UNetExtension()
