"""Network building blocks shared by the detector families: backbones, heads, the anchor
function generator, losses, post-processing and image batching."""
