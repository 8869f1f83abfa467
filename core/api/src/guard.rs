//! Panic guards for plugins loaded from dynamic libraries. Such a library links its own copy of
//! std, and one std cannot catch another's panics (the process aborts instead), so the
//! registrar of a library ([`crate::Registrar::for_library`]) wraps every factory and every
//! component it builds: a panic is caught on the plugin's side of the boundary and comes back
//! as an ordinary error, and the run that hit it is recorded FAILED like any other failure.
//!
//! Maintenance rule: a method added to [`Loss`], [`Recommender`], [`Dataset`], [`Backbone`],
//! [`LoadedBackbone`], [`Prompt`] or [`CompiledPrompt`] must be forwarded here too, or dynamic
//! plugins silently get its default.

use crate::backbone::{
    Backbone, Capability, ChatTurn, GenOutput, GenProgressFn, GenSettings, LoadedBackbone,
};
use crate::config::ConfigError;
use crate::data::{Phase, RawDataset, SplitData};
use crate::dataset::{Dataset, LoadContext};
use crate::error::PluginError;
use crate::loss::{Loss, LossInput, SamplerSpec};
use crate::prompt::{CompiledPrompt, Prompt, PromptContext, TemplateIssue};
use crate::recommender::{EpochContext, ModelKind, Recommender, TrainConfig};
use crate::side::{InputRequest, SideInputs};
use candle_core::Tensor;
use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::Arc;

/// The text of a panic payload.
fn message(p: &(dyn Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic payload".into())
}

/// Runs plugin code that returns a run-time result; a panic becomes [`PluginError::Other`].
fn run<T>(what: &str, f: impl FnOnce() -> Result<T, PluginError>) -> Result<T, PluginError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
        Err(PluginError::Other(format!(
            "panicked in {what}: {}",
            message(&*p)
        )))
    })
}

/// Runs plugin code that checks or builds from a config; a panic becomes a config error.
pub(crate) fn config<T>(
    what: &str,
    f: impl FnOnce() -> Result<T, Vec<ConfigError>>,
) -> Result<T, Vec<ConfigError>> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
        Err(vec![ConfigError::message(
            "",
            format!("the plugin panicked in {what}: {}", message(&*p)),
        )])
    })
}

pub(crate) struct GuardedLoss(pub Arc<dyn Loss>);

impl Loss for GuardedLoss {
    fn type_name(&self) -> &str {
        self.0.type_name()
    }

    fn input(&self) -> LossInput {
        self.0.input()
    }

    fn sampling(&self) -> SamplerSpec {
        self.0.sampling()
    }

    fn full(&self, logits: &Tensor, targets: &Tensor) -> Result<Tensor, PluginError> {
        run("Loss::full", || self.0.full(logits, targets))
    }

    fn sampled(&self, pos: &Tensor, neg: &Tensor) -> Result<Tensor, PluginError> {
        run("Loss::sampled", || self.0.sampled(pos, neg))
    }

    fn sampled_with_q(
        &self,
        pos: &Tensor,
        neg: &Tensor,
        log_q_pos: &Tensor,
        log_q_neg: &Tensor,
    ) -> Result<Tensor, PluginError> {
        run("Loss::sampled_with_q", || {
            self.0.sampled_with_q(pos, neg, log_q_pos, log_q_neg)
        })
    }
}

pub(crate) struct GuardedRecommender(pub Box<dyn Recommender>);

impl Recommender for GuardedRecommender {
    fn kind(&self) -> ModelKind {
        self.0.kind()
    }

    fn inputs(&self) -> Vec<InputRequest> {
        catch_unwind(AssertUnwindSafe(|| self.0.inputs())).unwrap_or_default()
    }

    fn attach(&mut self, side: &SideInputs) -> Result<(), PluginError> {
        run("Recommender::attach", || self.0.attach(side))
    }

    fn prepare(&mut self, data: &SplitData, seed: u64) -> Result<(), PluginError> {
        run("Recommender::prepare", || self.0.prepare(data, seed))
    }

    fn training(&self) -> Option<TrainConfig> {
        self.0.training()
    }

    fn train_epoch(
        &mut self,
        data: &SplitData,
        ctx: &mut EpochContext<'_>,
    ) -> Result<f64, PluginError> {
        run("Recommender::train_epoch", || self.0.train_epoch(data, ctx))
    }

    fn score(
        &self,
        data: &SplitData,
        phase: Phase,
        users: &[u32],
    ) -> Result<Vec<f32>, PluginError> {
        run("Recommender::score", || self.0.score(data, phase, users))
    }

    fn snapshot(&self) -> Result<Vec<(String, Tensor)>, PluginError> {
        run("Recommender::snapshot", || self.0.snapshot())
    }

    fn restore(&mut self, weights: &[(String, Tensor)]) -> Result<(), PluginError> {
        run("Recommender::restore", || self.0.restore(weights))
    }
}

pub(crate) struct GuardedDataset(pub Box<dyn Dataset>);

impl Dataset for GuardedDataset {
    fn describe(&self) -> String {
        self.0.describe()
    }

    fn load(&self, ctx: &LoadContext) -> Result<RawDataset, PluginError> {
        run("Dataset::load", || self.0.load(ctx))
    }
}

pub(crate) struct GuardedBackbone(pub Box<dyn Backbone>);

impl Backbone for GuardedBackbone {
    fn describe(&self) -> String {
        self.0.describe()
    }

    fn capabilities(&self) -> Vec<Capability> {
        self.0.capabilities()
    }

    fn id(&self, ctx: &LoadContext) -> Result<String, PluginError> {
        run("Backbone::id", || self.0.id(ctx))
    }

    fn open(&self, ctx: &LoadContext) -> Result<Box<dyn LoadedBackbone>, PluginError> {
        run("Backbone::open", || self.0.open(ctx))
            .map(|b| Box::new(GuardedLoadedBackbone(b)) as Box<dyn LoadedBackbone>)
    }
}

struct GuardedLoadedBackbone(Box<dyn LoadedBackbone>);

impl LoadedBackbone for GuardedLoadedBackbone {
    fn generate(
        &self,
        conversations: &[Vec<ChatTurn>],
        settings: &GenSettings,
        progress: &mut GenProgressFn<'_>,
    ) -> Result<Vec<GenOutput>, PluginError> {
        run("LoadedBackbone::generate", || {
            self.0.generate(conversations, settings, progress)
        })
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, PluginError> {
        run("LoadedBackbone::embed", || self.0.embed(texts))
    }
}

pub(crate) struct GuardedPrompt(pub Box<dyn Prompt>);

impl Prompt for GuardedPrompt {
    fn describe(&self) -> String {
        self.0.describe()
    }

    fn compile(&self, base_dir: &Path) -> Result<Box<dyn CompiledPrompt>, TemplateIssue> {
        catch_unwind(AssertUnwindSafe(|| self.0.compile(base_dir)))
            .unwrap_or_else(|p| {
                Err(TemplateIssue {
                    key: "template".into(),
                    file: None,
                    line: None,
                    message: format!("the plugin panicked compiling it: {}", message(&*p)),
                    help: None,
                })
            })
            .map(|c| Box::new(GuardedCompiledPrompt(c)) as Box<dyn CompiledPrompt>)
    }
}

struct GuardedCompiledPrompt(Box<dyn CompiledPrompt>);

impl CompiledPrompt for GuardedCompiledPrompt {
    fn history_len(&self) -> usize {
        self.0.history_len()
    }

    fn source_hash(&self) -> String {
        self.0.source_hash()
    }

    fn check_fields(&self, fields: &[String]) -> Result<(), TemplateIssue> {
        self.0.check_fields(fields)
    }

    fn render(&self, ctx: &PromptContext) -> Result<Vec<ChatTurn>, PluginError> {
        run("CompiledPrompt::render", || self.0.render(ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Panicky;

    impl Loss for Panicky {
        fn type_name(&self) -> &str {
            "panicky"
        }
        fn input(&self) -> LossInput {
            LossInput::FullLogits
        }
        fn full(&self, _: &Tensor, _: &Tensor) -> Result<Tensor, PluginError> {
            panic!("boom at row 3")
        }
    }

    #[test]
    fn panics_become_errors_and_everything_else_is_forwarded() {
        let g = GuardedLoss(Arc::new(Panicky));
        assert_eq!(g.type_name(), "panicky");
        assert_eq!(g.input(), LossInput::FullLogits);
        let t = Tensor::zeros(1, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
        let err = g.full(&t, &t).unwrap_err().to_string();
        assert_eq!(err, "panicked in Loss::full: boom at row 3");
        // Forwarded default: Panicky does not take sampled scores.
        assert!(g
            .sampled(&t, &t)
            .unwrap_err()
            .to_string()
            .contains("does not take"));
        let errs = config("the factory", || -> Result<(), _> { panic!("bad {}", 1) }).unwrap_err();
        assert_eq!(
            errs[0].describe(),
            "the plugin panicked in the factory: bad 1"
        );
    }

    struct PanickyModel;

    impl LoadedBackbone for PanickyModel {
        fn embed(&self, _: &[&str]) -> Result<Vec<Vec<f32>>, PluginError> {
            panic!("no vocabulary")
        }
    }

    struct PanickyTemplate;

    impl CompiledPrompt for PanickyTemplate {
        fn history_len(&self) -> usize {
            7
        }
        fn source_hash(&self) -> String {
            "h".into()
        }
        fn check_fields(&self, _: &[String]) -> Result<(), TemplateIssue> {
            Ok(())
        }
        fn render(&self, _: &PromptContext) -> Result<Vec<ChatTurn>, PluginError> {
            panic!("missing item")
        }
    }

    #[test]
    fn backbone_and_prompt_panics_become_errors() {
        let b = GuardedLoadedBackbone(Box::new(PanickyModel));
        let err = b.embed(&["x"]).unwrap_err().to_string();
        assert_eq!(err, "panicked in LoadedBackbone::embed: no vocabulary");
        // Forwarded default: the model cannot generate.
        let gen = b.generate(&[], &GenSettings::default(), &mut |_, _| {});
        assert!(gen.unwrap_err().to_string().contains("cannot generate"));
        let p = GuardedCompiledPrompt(Box::new(PanickyTemplate));
        assert_eq!((p.history_len(), p.source_hash()), (7, "h".to_string()));
        let err = p.render(&PromptContext::default()).unwrap_err().to_string();
        assert_eq!(err, "panicked in CompiledPrompt::render: missing item");
    }
}
