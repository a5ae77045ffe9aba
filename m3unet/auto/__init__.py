"""Automatic restore: the degradation classifier reads the image, the plan orders the steps, the
model pool runs them, the policy decides what is kept (RestoreAgent / AgenticIR-style, with a small
classifier in place of an MLLM)."""
from .classifier import (DEFAULT_CLASSIFIER, LABELS, Classifier, ClassifierError, DegradationClassifier, Finding,
                         is_classifier_file, load_classifier)
from .factory import build_auto_restorer
from .policy import DEFAULT_POLICY, PolicyError, RestorePolicy, policy_from
from .deblur import MAX_SIGMA, BlurEstimatorError, KernelDeblur, is_estimator_file, shipped_estimator
from .motion import MotionDeblur, MotionDeblurError, MotionEstimate, estimate_motion
from .reading import Reader
from .plan import TASKS, Plan, PlanError, Step, parse_plans, plan_from_finding
from .pool import M3UNetPoolModel, Pool, PoolError, PoolModel, load_pool_model, parse_pool_arg, shipped_tools
from .restorer import (DEFAULT_BUDGET, MAX_BUDGET, SHIPPED_CLASSIFIER, AutoProgress, AutoRestorer, AutoResult,
                       classifier_or_shipped, load_shipped_classifier)

__all__ = ["DEFAULT_CLASSIFIER", "LABELS", "Classifier", "ClassifierError", "DegradationClassifier", "Finding",
           "is_classifier_file", "load_classifier", "MAX_SIGMA", "BlurEstimatorError", "KernelDeblur",
           "is_estimator_file", "shipped_estimator", "TASKS", "Plan", "PlanError", "Step", "parse_plans",
           "plan_from_finding", "M3UNetPoolModel", "Pool", "PoolError", "PoolModel", "load_pool_model",
           "parse_pool_arg", "shipped_tools", "DEFAULT_BUDGET", "MAX_BUDGET", "SHIPPED_CLASSIFIER", "AutoProgress",
           "AutoRestorer", "AutoResult", "classifier_or_shipped", "load_shipped_classifier",
           "build_auto_restorer", "DEFAULT_POLICY", "PolicyError", "RestorePolicy", "policy_from",
           "MotionDeblur", "MotionDeblurError", "MotionEstimate", "estimate_motion", "Reader"]
