//! ouro: a laboratory for self-consuming generative models.
//!
//! A model is fitted to real data, sampled, and the next generation is fitted on a training set
//! built from real and synthetic points by a [`schedule::Schedule`]; every generation is measured
//! by [`metrics`]. Data flow one way:
//!
//! ```text
//! config (TOML) ─► Experiment ─► for each seed and generation:
//!     Target/RealData ─► Schedule builds the training set ─► Learner::fit ─► Model
//!     ─► Model::sample ─► metrics ─► a row of metrics.csv (+ samples/*.npy)
//! ```

pub mod classifier;
pub mod cli;
pub mod config;
pub mod curate;
pub mod data;
pub mod diffusion;
pub mod distributions;
pub mod error;
pub mod experiment;
pub mod linalg;
pub mod metrics;
pub mod models;
pub mod nn;
pub mod progress;
pub mod report;
pub mod reproduce;
pub mod rng;
pub mod schedule;
pub mod theory;

pub use error::{Error, Result};
