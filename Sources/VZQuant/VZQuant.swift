// The vzquant library as one import for apps, the command-line tool and the tests. The layers below depend on each
// other in one direction only (ARCHITECTURE.md); the compiler enforces it, one SwiftPM target per folder.
@_exported import VZQSupport
@_exported import VZQKernels
@_exported import VZQFormats
@_exported import VZQModels
@_exported import VZQTokenReduction
@_exported import VZQText
@_exported import VZQImage
@_exported import VZQFamilies
@_exported import VZQRuntime
@_exported import VZQConvert
@_exported import VZQBench
@_exported import VZQPrune
