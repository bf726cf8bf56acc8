package io.strmspark.fs;

import java.io.File;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.InvalidPathException;
import java.nio.file.attribute.PosixFilePermission;
import java.util.EnumSet;
import java.util.Set;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.RawLocalFileSystem;
import org.apache.hadoop.fs.permission.FsPermission;

/**
 * Hadoop's local file system, without a process per file operation.
 *
 * <p>Without Hadoop's native library (pyspark ships none), {@link RawLocalFileSystem} runs
 * {@code chmod} for every directory and file it creates with a permission, and {@code readlink}
 * every time a rename or create looks at a path's link status: about 300 processes per small
 * strm-spark run, each 5-6 ms on the driver. This class does both through java.nio, with the
 * same results: the same mode bits, and a link status that is the file's status unless the path
 * is a symbolic link, where Hadoop's own code runs. strm-spark's local sessions name it (with
 * {@link LocalFileSystem} and {@link LocalFs}) for the {@code file:} scheme.
 */
public class NioRawLocalFileSystem extends RawLocalFileSystem {
  private static final PosixFilePermission[] BITS = {
    PosixFilePermission.OTHERS_EXECUTE,
    PosixFilePermission.OTHERS_WRITE,
    PosixFilePermission.OTHERS_READ,
    PosixFilePermission.GROUP_EXECUTE,
    PosixFilePermission.GROUP_WRITE,
    PosixFilePermission.GROUP_READ,
    PosixFilePermission.OWNER_EXECUTE,
    PosixFilePermission.OWNER_WRITE,
    PosixFilePermission.OWNER_READ,
  };

  /** The mode bits of {@code permission} as java.nio's set; null when a bit beyond rwx is set. */
  static Set<PosixFilePermission> posix(FsPermission permission) {
    int mode = permission.toShort();
    if ((mode & ~0777) != 0) {
      return null;
    }
    Set<PosixFilePermission> set = EnumSet.noneOf(PosixFilePermission.class);
    for (int bit = 0; bit < BITS.length; bit++) {
      if ((mode & (1 << bit)) != 0) {
        set.add(BITS[bit]);
      }
    }
    return set;
  }

  @Override
  public void setPermission(Path p, FsPermission permission) throws IOException {
    Set<PosixFilePermission> set = posix(permission);
    if (set == null) { // the sticky bit: Hadoop's chmod
      super.setPermission(p, permission);
      return;
    }
    Files.setPosixFilePermissions(pathToFile(p).toPath(), set);
  }

  @Override
  public FileStatus getFileLinkStatus(Path f) throws IOException {
    // Hadoop asks `readlink` about the path's text (a qualified `file:/x` names no file, so it
    // is never a link) and returns the file's status when there is no link target.
    boolean link;
    try {
      link = Files.isSymbolicLink(new File(f.toString()).toPath());
    } catch (InvalidPathException e) {
      link = false;
    }
    return link ? super.getFileLinkStatus(f) : getFileStatus(f);
  }
}
