//! Deployment tools of the `corestream` command that need nothing of the server: `nginx`
//! prints the shipped nginx configs filled in for a deployment. Called by `main`.

pub mod nginx;
