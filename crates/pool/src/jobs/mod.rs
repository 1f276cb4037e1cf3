//! Reading jobs: a JSON Lines, CSV or TSV file, checked whole before any
//! worker starts ([`check`]) and then streamed again by a reader thread
//! ([`feeder`]) that builds each job ([`parse`], with [`template`]s for
//! table rows) only as the run is about to send it.

pub mod check;
pub mod decode;
pub mod expand;
pub(crate) mod feeder;
pub(crate) mod params;
mod parse;
pub mod table;
pub mod template;

pub use parse::*;
