//! Registration: how a plugin crate (compiled in, or loaded as a dynamic library) hands its
//! plugins to pulse. Each plugin crate exposes `pub fn register(r: &mut Registrar)` and adds one
//! entry per plugin; the registry crate collects them, rejects duplicate names and serves
//! lookups by family and type. The wrappers here do the generic part of every factory: strip
//! `type`, decode the config struct, run its `validate`, then call the plugin's constructor.

use crate::backbone::Backbone;
use crate::config::{decode, ConfigError, PluginConfig};
use crate::dataset::Dataset;
use crate::family::{Family, PluginInfo, Reference};
use crate::guard;
use crate::loss::{Loss, LossBuilder};
use crate::prompt::Prompt;
use crate::recommender::Recommender;
use serde_json::Value;
use std::sync::Arc;

/// Builds a dataset from its section.
pub type DatasetFactory =
    Box<dyn Fn(&Value) -> Result<Box<dyn Dataset>, Vec<ConfigError>> + Send + Sync>;
/// Builds a loss from its section.
pub type LossFactory = Box<dyn Fn(&Value) -> Result<Arc<dyn Loss>, Vec<ConfigError>> + Send + Sync>;
/// Builds a recommender from its section; losses it names are built through the builder.
pub type RecommenderFactory = Box<
    dyn Fn(&Value, &dyn LossBuilder) -> Result<Box<dyn Recommender>, Vec<ConfigError>>
        + Send
        + Sync,
>;
/// Builds a backbone from its section (cheap: weights load in [`Backbone::open`]).
pub type BackboneFactory =
    Box<dyn Fn(&Value) -> Result<Box<dyn Backbone>, Vec<ConfigError>> + Send + Sync>;
/// Builds a prompt from its section.
pub type PromptFactory =
    Box<dyn Fn(&Value) -> Result<Box<dyn Prompt>, Vec<ConfigError>> + Send + Sync>;
/// Decodes and validates a section, returning the references it makes.
pub type Checker = Box<dyn Fn(&Value) -> Result<Vec<Reference>, Vec<ConfigError>> + Send + Sync>;

/// A plugin's constructor from its decoded config, per family.
pub type BuildDataset<C> = fn(C) -> Result<Box<dyn Dataset>, Vec<ConfigError>>;
pub type BuildLoss<C> = fn(C) -> Result<Arc<dyn Loss>, Vec<ConfigError>>;
pub type BuildRecommender<C> =
    fn(C, &dyn LossBuilder) -> Result<Box<dyn Recommender>, Vec<ConfigError>>;
pub type BuildBackbone<C> = fn(C) -> Result<Box<dyn Backbone>, Vec<ConfigError>>;
pub type BuildPrompt<C> = fn(C) -> Result<Box<dyn Prompt>, Vec<ConfigError>>;

/// One family's factory.
pub enum Factory {
    Dataset(DatasetFactory),
    Loss(LossFactory),
    Recommender(RecommenderFactory),
    Backbone(BackboneFactory),
    Prompt(PromptFactory),
}

/// A registered plugin.
pub struct Registration {
    pub info: PluginInfo,
    pub check: Checker,
    pub factory: Factory,
}

/// Collects registrations from plugin crates.
#[derive(Default)]
pub struct Registrar {
    origin: String,
    entries: Vec<Registration>,
    /// Catch panics in the plugin's code (see [`Registrar::for_library`]).
    guarded: bool,
}

impl std::fmt::Debug for Registrar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registrar")
            .field("origin", &self.origin)
            .field("entries", &self.entries.len())
            .finish()
    }
}

/// Decodes `C` from a section without its `type` key and runs `validate`.
pub fn decode_section<C: PluginConfig>(section: &Value) -> Result<C, Vec<ConfigError>> {
    let mut body = section.clone();
    if let Value::Object(map) = &mut body {
        map.remove("type");
    }
    let cfg: C = decode(&body).map_err(|e| vec![e])?;
    let errors = cfg.validate();
    if errors.is_empty() {
        Ok(cfg)
    } else {
        Err(errors)
    }
}

impl Registrar {
    /// A registrar whose entries are labelled with `origin` (`built-in`, or a library path).
    pub fn new(origin: impl Into<String>) -> Self {
        Self {
            origin: origin.into(),
            entries: Vec::new(),
            guarded: false,
        }
    }

    /// A registrar for a dynamically loaded library at `path`: every factory and component it
    /// registers turns its panics into errors on the plugin's side of the boundary, because
    /// the host's std cannot catch the library's panics (see `guard.rs`).
    pub fn for_library(path: impl Into<String>) -> Self {
        Self {
            guarded: true,
            ..Self::new(path)
        }
    }

    pub fn into_entries(self) -> Vec<Registration> {
        self.entries
    }

    fn info<C: PluginConfig>(&self, family: Family) -> PluginInfo {
        PluginInfo {
            family,
            type_name: C::TYPE.to_string(),
            summary: C::SUMMARY.to_string(),
            example: C::EXAMPLE.to_string(),
            origin: self.origin.clone(),
        }
    }

    fn checker<C: PluginConfig + 'static>(&self) -> Checker {
        if self.guarded {
            return Box::new(|v| {
                guard::config("decoding its config", || {
                    decode_section::<C>(v).map(|c| c.references())
                })
            });
        }
        Box::new(|v| decode_section::<C>(v).map(|c| c.references()))
    }

    pub fn dataset<C: PluginConfig + 'static>(&mut self, build: BuildDataset<C>) {
        let info = self.info::<C>(Family::Dataset);
        let factory: DatasetFactory = if self.guarded {
            Box::new(move |v| {
                guard::config("building the dataset", || build(decode_section::<C>(v)?))
                    .map(|d| Box::new(guard::GuardedDataset(d)) as Box<dyn Dataset>)
            })
        } else {
            Box::new(move |v| build(decode_section::<C>(v)?))
        };
        self.entries.push(Registration {
            info,
            check: self.checker::<C>(),
            factory: Factory::Dataset(factory),
        });
    }

    pub fn loss<C: PluginConfig + 'static>(&mut self, build: BuildLoss<C>) {
        let info = self.info::<C>(Family::Loss);
        let factory: LossFactory = if self.guarded {
            Box::new(move |v| {
                guard::config("building the loss", || build(decode_section::<C>(v)?))
                    .map(|l| Arc::new(guard::GuardedLoss(l)) as Arc<dyn Loss>)
            })
        } else {
            Box::new(move |v| build(decode_section::<C>(v)?))
        };
        self.entries.push(Registration {
            info,
            check: self.checker::<C>(),
            factory: Factory::Loss(factory),
        });
    }

    /// A recommender. Its `check` builds it (with the losses it names) so that an incompatible
    /// model/loss pair is a validate-time diagnostic; building must therefore be cheap
    /// (allocate parameters in `prepare`, not here).
    pub fn recommender<C: PluginConfig + 'static>(&mut self, build: BuildRecommender<C>) {
        let info = self.info::<C>(Family::Recommender);
        let factory: RecommenderFactory = if self.guarded {
            Box::new(move |v, losses| {
                guard::config("building the model", || {
                    build(decode_section::<C>(v)?, losses)
                })
                .map(|m| Box::new(guard::GuardedRecommender(m)) as Box<dyn Recommender>)
            })
        } else {
            Box::new(move |v, losses| build(decode_section::<C>(v)?, losses))
        };
        self.entries.push(Registration {
            info,
            check: self.checker::<C>(),
            factory: Factory::Recommender(factory),
        });
    }

    /// A backbone (guarded for library plugins: factory, loading, generation, embedding).
    pub fn backbone<C: PluginConfig + 'static>(&mut self, build: BuildBackbone<C>) {
        let info = self.info::<C>(Family::Backbone);
        let factory: BackboneFactory = if self.guarded {
            Box::new(move |v| {
                guard::config("building the backbone", || build(decode_section::<C>(v)?))
                    .map(|b| Box::new(guard::GuardedBackbone(b)) as Box<dyn Backbone>)
            })
        } else {
            Box::new(move |v| build(decode_section::<C>(v)?))
        };
        self.entries.push(Registration {
            info,
            check: self.checker::<C>(),
            factory: Factory::Backbone(factory),
        });
    }

    /// A prompt (guarded for library plugins: factory, compiling, rendering).
    pub fn prompt<C: PluginConfig + 'static>(&mut self, build: BuildPrompt<C>) {
        let info = self.info::<C>(Family::Prompt);
        let factory: PromptFactory = if self.guarded {
            Box::new(move |v| {
                guard::config("building the prompt", || build(decode_section::<C>(v)?))
                    .map(|p| Box::new(guard::GuardedPrompt(p)) as Box<dyn Prompt>)
            })
        } else {
            Box::new(move |v| build(decode_section::<C>(v)?))
        };
        self.entries.push(Registration {
            info,
            check: self.checker::<C>(),
            factory: Factory::Prompt(factory),
        });
    }
}
