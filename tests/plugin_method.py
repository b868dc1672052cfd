"""An installed plugin's module, as an entry point in the group ``mlr_bench.methods`` names it:
importing it registers its method."""

from methods.base import register_method
from tests.fake_methods import PixelMethod


@register_method
class EntryPointMethod(PixelMethod):
    name = "test-entry-point"
    description = "a method registered by an entry point"
