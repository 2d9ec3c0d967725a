//! Node and cluster providers: containerd config renderers, SSH and local transports
