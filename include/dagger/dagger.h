#pragma once
/// dagger's public API in one include: the model DSL, optimizers, data sets, the trainer
/// (fit, evaluate, predict, save, load), metrics, checkpoints, PNG images, the per-layer
/// summary, and the study's model zoo.
/// A program links the CMake target dagger::dagger; the JIT is the default executor.
#include "dagger/autodiff/optimizer.h"
#include "dagger/autodiff/step.h"
#include "dagger/graph/dsl.h"
#include "dagger/models/zoo.h"
#include "dagger/runtime/checkpoint.h"
#include "dagger/runtime/data.h"
#include "dagger/runtime/image.h"
#include "dagger/runtime/metrics.h"
#include "dagger/runtime/summary.h"
#include "dagger/runtime/trainer.h"
