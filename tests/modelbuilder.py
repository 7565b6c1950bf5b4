"""Build QgsProcessingModelAlgorithm graphs in tests the way the graphical modeler does: every parameter
not wired explicitly gets its default value as a static source."""
from qgis.core import (
    QgsApplication,
    QgsProcessingDestinationParameter,
    QgsProcessingModelChildAlgorithm,
    QgsProcessingModelChildParameterSource,
    QgsProcessingModelOutput,
)


def add_child(model, alg_id, child_id, sources, outputs=()):
    """Add ``alg_id`` as child ``child_id``; ``sources``: {param: QgsProcessingModelChildParameterSource};
    ``outputs``: output names exposed as model outputs ``<child_id>_<name>`` (id in results:
    ``<child_id>:<child_id>_<name>``)."""
    alg = QgsApplication.processingRegistry().algorithmById(alg_id)
    assert alg is not None, alg_id
    child = QgsProcessingModelChildAlgorithm(alg_id)
    child.setChildId(child_id)
    for p in alg.parameterDefinitions():
        if p.name() in sources:
            child.addParameterSources(p.name(), [sources[p.name()]])
        elif isinstance(p, QgsProcessingDestinationParameter):
            continue  # the model makes a temporary output (or skips an optional one), as the modeler does
        else:
            child.addParameterSources(p.name(), [QgsProcessingModelChildParameterSource.fromStaticValue(
                p.defaultValue())])
    outs = {}
    for name in outputs:
        o = QgsProcessingModelOutput(f"{child_id}_{name}", name)
        o.setChildOutputName(name)
        o.setChildId(child_id)
        outs[f"{child_id}_{name}"] = o
    child.setModelOutputs(outs)
    model.addChildAlgorithm(child)
    return child
