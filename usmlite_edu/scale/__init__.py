"""How arrays spread over devices and hosts: meshes, logical sharding rules, several
processes. Depends only on JAX; the model declares logical axis names and this wing maps
them onto a mesh (see ``docs/scaling.md``)."""
