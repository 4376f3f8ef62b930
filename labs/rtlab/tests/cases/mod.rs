//! Every conformance case, as `pub fn case(runtime: &str)`. Each starts its
//! own server and panics on any deviation from the contract.

mod echo;
mod epochs;
mod http;
mod lifecycle;
mod limits;
mod load;
mod sse;
mod tokens;
mod ws;

pub use echo::*;
pub use epochs::*;
pub use http::*;
pub use lifecycle::*;
pub use limits::*;
pub use load::*;
pub use sse::*;
pub use tokens::*;
pub use ws::*;
