//! Tarn's integration suite: one binary; every test spawns the real server process.

mod access;
mod architecture;
mod bad_input;
mod cli;
mod cluster;
mod config;
mod durability;
mod export;
mod flight;
mod formats;
mod heatwave;
mod http_api;
mod limits;
mod mysql;
mod nested;
mod oci;
mod page;
mod proxy;
mod recovery;
mod refresh;
mod refresh_s3;
mod regions;
mod s3;
mod support;
mod tls;
mod versions;
