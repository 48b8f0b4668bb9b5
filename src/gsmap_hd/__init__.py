"""gsmap_hd: GSMap online HD map prediction with ordered sequences of 2D Gaussians in BEV."""
