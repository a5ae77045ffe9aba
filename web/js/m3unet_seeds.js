// M3UNet for ComfyUI: new M3UNet nodes start with their seed's "control after generate" at "fixed".
//
// Their results do not change with the seed in the default settings, so a seed that changes after
// every run only makes ComfyUI recompute an unchanged graph instead of answering from its cache.
// Newer ComfyUI versions take the mode from the node definition (io.ControlAfterGenerate.fixed); the
// front end of ComfyUI 0.3.75 (1.32) always starts at "randomize", so this sets new nodes to "fixed".
// Nodes loaded from a workflow keep the mode saved in it: loading applies the saved values after this.
// The app from the front end's API object (newer front ends deprecate the scripts/ shims), else the shim.
const { app } = window.comfyAPI?.app?.app ? window.comfyAPI.app : await import("../../../scripts/app.js");

const SEEDED = new Set(["M3UNetSampler", "M3UNetAutoRestore", "M3UNetKernelDeblur", "M3UNetMotionDeblur", "M3UNetMLLMCaption"]);
const MODES = ["fixed", "increment", "decrement", "randomize"];

function seedControl(node) {
  const seed = node.widgets?.find((w) => w.name === "seed");
  const linked = seed?.linkedWidgets ?? [];
  return linked.find((w) => MODES.every((m) => w.options?.values?.includes?.(m)))
    ?? node.widgets?.find((w) => w.name === "control_after_generate");
}

app.registerExtension({
  name: "M3UNet.FixedSeeds",
  nodeCreated(node) {
    if (!SEEDED.has(node.comfyClass ?? node.type)) return;
    const control = seedControl(node);
    if (control && control.value === "randomize") control.value = "fixed";
  },
});
