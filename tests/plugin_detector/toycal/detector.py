from hepnb.registry import Detector, Task

DETECTOR = Detector(
    name="toycal",
    description="toy calorimeter: 16 photosensors in a row, a hit graph",
    schemas="toycal.schema", simulation="toycal.sim", training="toycal.training", stages="toycal.stages",
    evaluator="toycal.evaluate", display="toycal.display", geometry="toycal.geometry",
    tasks=(Task("energy", "toycal.energy", "the shower energy from the photosensors"),
           Task("pretrain", "toycal.pretrain", "masked-sensor reconstruction (no labels)")),
)
