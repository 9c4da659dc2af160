//! The modeled internet link of the link benchmarks (`bench/link/`): the model's arithmetic (`model`), what it
//! counts (`ledger`), and how it reads the HTTP/1.1 requests that cross it (`http1`). `bin/link_proxy.rs` puts them
//! on sockets.

pub mod http1;
pub mod ledger;
pub mod model;
