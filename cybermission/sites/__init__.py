"""Where things are: organisations, their sites and the network zones inside them."""
