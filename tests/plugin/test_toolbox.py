"""The Processing toolbox as QGIS builds it (QgsProcessingToolboxModel): the k-textures algorithms sit directly
under the provider node, with no group node of the provider's own name in between."""


def test_algorithms_directly_under_provider(provider):
    from qgis.core import QgsApplication
    from qgis.gui import QgsProcessingToolboxModel

    reg = QgsApplication.processingRegistry()
    provider = reg.providerById("ktextures")  # the registered one (another test may have re-registered it)
    model = QgsProcessingToolboxModel(None, reg)
    root = model.indexForProvider(provider.id())
    assert root.isValid()
    children = [model.index(i, 0, root) for i in range(model.rowCount(root))]
    assert children
    algs = [model.algorithmForIndex(c) for c in children]
    assert all(a is not None for a in algs), [model.data(c) for c in children]  # no group nodes
    assert {a.id() for a in algs} == {a.id() for a in provider.algorithms()}
    assert "k-textures" not in [model.data(c) for c in children]
