"""An example servesim plug-in: one scheduler, registered through the `servesim.scheduler` entry point."""
from servesim_plugin_example.scheduler import ShortestPromptFirstParams, ShortestPromptFirstSchedulerPolicy

__all__ = ["ShortestPromptFirstParams", "ShortestPromptFirstSchedulerPolicy"]
