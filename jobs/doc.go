// Package jobs knows the batch system around a job: which scheduler started
// it and which host variables pass into the container. Its functions take
// the environment as a value (FromEnv(environ), ContainerEnv(...)) and
// never read os.Getenv, so table-driven tests cover them.
package jobs
