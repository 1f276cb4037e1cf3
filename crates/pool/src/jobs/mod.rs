//! Reading jobs: a JSON Lines, CSV or TSV file, checked whole before any
//! worker starts ([`check`]) and then streamed again by a reader thread
//! ([`feeder`]) that builds each job ([`parse`], with [`template`]s for
//! table rows) only as the run is about to send it.

mod body;
pub mod check;
pub mod decode;
pub mod expand;
pub(crate) mod feeder;
mod input;
mod layout;
pub(crate) mod params;
mod parse;
mod request;
pub mod table;
pub mod template;

pub use parse::*;
