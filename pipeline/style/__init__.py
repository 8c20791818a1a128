"""Neural style transfer (Gatys, Ecker and Bethge 2016, "Image Style Transfer Using Convolutional
Neural Networks"): an image optimised so that its features keep a content photo's layout while
their Gram matrices match a painting's. ``features``: what "features" means here (random
multi-scale filters offline, VGG-19 from a file); ``gram``: the Gram matrix and the losses;
``transfer``: the coarse-to-fine optimisation; ``baseline``: colour-statistics transfer, what a
stylization must beat; ``scores``: how far an image moved toward the style and away from the
content."""
