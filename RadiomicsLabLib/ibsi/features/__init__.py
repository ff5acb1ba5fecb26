"""IBSI chapter 1 feature families: each module has ``compute(roi, settings) -> {IBSI tag: value}``."""
